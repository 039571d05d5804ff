/**
 * The `revoked` notice (an extension): detach, replace, unplug and destroy
 * tell every open connection which cookies they answered, once per operation;
 * groups never delivered (no cookie) are not listed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { iommufdDeviceAttach, iommufdDeviceDetach, iommufdDeviceReplace } from '../../core/index.js';
import { iopfQueueRemoveDevice } from '../../core/iopf/io-pgfault.js';
import type { SimIommu } from '../../core/drivers/sim-iommu.js';
import { World } from './harness.js';

function revokedOf(notices: Array<{ type: string; value: unknown }>): unknown[] {
  return notices.filter((n) => n.type === 'revoked').map((n) => n.value);
}

test('revoked: detach with one delivered and one queued group lists only the delivered cookie, cause detach, on every connection', () => {
  const w = new World();
  const { d, f } = w.standard();
  const fd = w.fd(f);
  const other = w.fd(f);
  w.T(undefined, 1, true);
  const cookie = fd.records(40)[0]!.cookie;
  w.T(undefined, 2, true);
  assert.equal(f.queued, 1);
  iommufdDeviceDetach(d);
  assert.equal(w.log().length, 2);
  assert.deepEqual(revokedOf(fd.notices), [{ cause: 'detach', cookies: [cookie] }]);
  assert.deepEqual(revokedOf(other.notices), [{ cause: 'detach', cookies: [cookie] }]);
});

test('revoked: nothing delivered, no notice', () => {
  const w = new World();
  const { d, f } = w.standard();
  const fd = w.fd(f);
  w.T(undefined, 1, true);
  iommufdDeviceDetach(d);
  assert.equal(w.log().length, 1);
  assert.deepEqual(revokedOf(fd.notices), []);
});

test('revoked: a group returned to the queue with its cookie (disconnect) is listed; several groups make one notice', () => {
  const w = new World();
  const { d, f } = w.standard();
  const gone = w.fd(f);
  w.T(undefined, 1, true);
  w.T(undefined, 2, true);
  const cookies = gone.records().map((r) => r.cookie);
  assert.equal(cookies.length, 2);
  f.close(gone.conn);
  const fd = w.fd(f);
  iommufdDeviceDetach(d);
  assert.deepEqual(revokedOf(fd.notices), [{ cause: 'detach', cookies }]);
});

test('revoked: replace → cause replace', () => {
  const w = new World();
  const { d, f1, h2 } = w.twoQueues();
  const { fd, cookie } = w.readAndUnread(f1);
  iommufdDeviceReplace(d, h2.id);
  assert.deepEqual(revokedOf(fd.notices), [{ cause: 'replace', cookies: [cookie] }]);
});

test('revoked: hot-unplug (remove-device) → cause unplug', () => {
  const w = new World();
  const { f } = w.standard();
  const { fd, cookie } = w.readAndUnread(f);
  w.platform.removeDevice('d0');
  assert.deepEqual(revokedOf(fd.notices), [{ cause: 'unplug', cookies: [cookie] }]);
});

test('revoked: iopf remove-device (the revoke path) → one notice, cause unplug', () => {
  const w = new World();
  const { f } = w.standard();
  const fd = w.fd(f);
  w.T(undefined, 1, true);
  w.T(undefined, 2, true);
  const cookies = fd.records().map((r) => r.cookie);
  w.T(undefined, 3, true);
  const driver = w.platform.iommus.get('iommu0')!.driver as SimIommu;
  iopfQueueRemoveDevice(driver.queue, w.platform.iommuDevice('d0'));
  assert.equal(w.log().length, 3);
  assert.deepEqual(revokedOf(fd.notices), [{ cause: 'unplug', cookies }]);
});

test('revoked: context release: the streams hear of every delivered cookie before kill', () => {
  const w = new World();
  const { f } = w.standard();
  const { fd, cookie } = w.readAndUnread(f);
  w.platform.releaseContext(w.ctx.id);
  // Release detaches the device first (cause detach), then destroys the queue.
  assert.deepEqual(fd.notices, [
    { type: 'revoked', value: { cause: 'detach', cookies: [cookie] } },
    { type: 'kill', value: null },
  ]);
  assert.equal(w.audit().outstandingGroups, 0);
});

test('revoked: groups v6.15 left in the old queue are taken back by iopf_queue_remove_device at the last fault-capable detach, before kill', () => {
  // v6.15's E13 bug leaves the old attachment's groups in their queue after a
  // replace; release detaches the device's last fault-capable attachment,
  // which takes it off the iopf queue: those groups are revoked then (cause
  // unplug, the iopf_queue_remove_device path), before the queue is destroyed.
  const w = new World({ kernel: 'v6.15' });
  const { d, f1, h2 } = w.twoQueues();
  const { fd, cookie } = w.readAndUnread(f1);
  iommufdDeviceReplace(d, h2.id);
  assert.deepEqual(fd.notices, []);
  w.platform.releaseContext(w.ctx.id);
  assert.deepEqual(fd.notices, [
    { type: 'revoked', value: { cause: 'unplug', cookies: [cookie] } },
    { type: 'kill', value: null },
  ]);
  assert.equal(w.audit().outstandingGroups, 0);
});
