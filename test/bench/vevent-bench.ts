/**
 * vEVENTQ events/s end to end in `vevent.v1.uapi`: a daemon (built in this
 * process, listening on 127.0.0.1) whose SMMUv3 unit reports stage-1 events
 * for arm0 as fast as the stream takes them, and a WebSocket client reading
 * the binary records. The events enter where the hardware's would: the
 * driver's event queue handler (arm_smmu_handle_event → vEVENTQ), in batches
 * of @batch per event-loop turn while fewer than @depth wait in the queue,
 * so the figure is the vEVENTQ and its stream, not a REST round trip per
 * event. bench.ts compares it with baseline B's records/s.
 *
 * Standalone: `node dist/test/bench/vevent-bench.js [--seconds S]` prints
 * `{"eventsPerSec": N, "lost": L}`.
 */
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { EVT_ID, STE_CFG_S1_TRANS, encodeSte } from '../../core/hw/smmuv3.js';
import { smmuEvent } from '../core/arm-events.js';
import { HWPT_FLAGS, VEVENT_SUBPROTOCOL_UAPI, decodeVevents } from '../../protocol/index.js';
import { buildApp } from '../../server/app.js';
import type { Json } from './load.js';

/** veventRate() - events/s read by one uapi client over @seconds (after a short warm-up). */
export async function veventRate(seconds: number, depth = 4096, batch = 256): Promise<{ eventsPerSec: number; lost: number }> {
  const daemon = buildApp({});
  await daemon.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = daemon.app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const base = `http://127.0.0.1:${port}`;
  const call = async (method: string, path: string, token: string | undefined, body?: unknown): Promise<Json> => {
    const res = await fetch(base + path, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  let stop = false;
  try {
    const { ctx, token } = await call('POST', '/v1/contexts', undefined, {});
    const C = `/v1/contexts/${ctx}`;
    const { dev_id } = await call('POST', `${C}/devices`, token, { name: 'arm0' });
    const { id: ioas } = await call('POST', `${C}/ioas`, token, {});
    await call('POST', `${C}/ioas/${ioas}/map`, token, { iova: '0x0', length: '0x10000' });
    const { id: parent } = await call('POST', `${C}/hwpt`, token, { dev_id, pt_id: ioas, flags: HWPT_FLAGS.NEST_PARENT });
    const { id: viommu } = await call('POST', `${C}/viommu`, token, { type: 'arm_smmuv3', dev_id, hwpt_id: parent });
    await call('POST', `${C}/vdevice`, token, { viommu_id: viommu, dev_id, virt_id: '0x1' });
    const ste = encodeSte({ cfg: STE_CFG_S1_TRANS, s1ContextPtr: 0x1000n }).map((w) => `0x${w.toString(16)}`);
    const { id: nested } = await call('POST', `${C}/hwpt`, token, { dev_id, pt_id: viommu, data_type: 'arm_smmuv3', data: { ste } });
    await call('POST', `${C}/devices/${dev_id}/attach`, token, { pt_id: nested });
    const q = await call('POST', `${C}/veventq`, token, { viommu_id: viommu, type: 'arm_smmuv3', depth });

    let received = 0;
    const ws = new WebSocket(`ws://127.0.0.1:${port}${q.stream}`, [VEVENT_SUBPROTOCOL_UAPI], {
      headers: { authorization: `Bearer ${token}` },
      perMessageDeflate: false,
    });
    ws.on('message', (data: Buffer, binary: boolean) => {
      if (binary) received += decodeVevents(new Uint8Array(data)).length;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });

    // The hardware: event records for arm0, handed to the driver's event handler.
    const driver = daemon.platform.iommuDevice('arm0').ops as SimIommu;
    const sid = daemon.platform.function('arm0').rid;
    const evt = smmuEvent(sid, EVT_ID.F_TRANSLATION, { addr: 0x4000n });
    const status = (): Promise<{ queued: number; lost: number }> => call('GET', `${C}/veventq/${q.id}`, token);
    let reported = 0;
    const produce = async (): Promise<void> => {
      while (!stop) {
        // Keep the queue fed without overflowing it: the figure is what the stream carries.
        const backlog = reported - received;
        if (backlog < depth - batch) {
          for (let i = 0; i < batch; i++) driver.handleEvent(evt);
          reported += batch;
        }
        await tick();
      }
    };
    const producer = produce();
    await sleep(300);
    const r0 = received;
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const eventsPerSec = (received - r0) / ((performance.now() - t0) / 1000);
    stop = true;
    await producer;
    const { lost } = await status();
    ws.terminate();
    return { eventsPerSec, lost };
  } finally {
    stop = true;
    await daemon.shutdown();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--seconds');
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 2;
  process.stdout.write(`${JSON.stringify(await veventRate(seconds))}\n`);
}
