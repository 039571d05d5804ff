/**
 * Loaded into the benchmark's daemon child with `--import` (and run with
 * --expose-gc): on the IPC message `'heap'` it collects garbage twice and
 * replies `{ heapUsed }`, so the bench can weigh what outstanding groups
 * cost inside the daemon. Nothing else; the daemon itself is unchanged.
 */
process.on('message', (m: unknown) => {
  if (m !== 'heap') return;
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  process.send?.({ heapUsed: process.memoryUsage().heapUsed, gc: gc !== undefined });
});
