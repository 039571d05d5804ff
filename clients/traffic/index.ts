/** DOC: DMA workloads (TrafficGenerator) for the traffic process, iopfctl and the demo. */
export * from './traffic.js';
