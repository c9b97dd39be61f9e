// device/dtype resolution (lib/loaders/device_options.ts) and the model CPU offload group
// (lib/models/model_cpu_offload.ts), on any machine: the GPU side of both is in test/gpu.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backends } from '../../lib/backends.js';
import { modelPlacement, resolvePlacement, withPipelinePlacement, type ResolvedPlacement } from '../../lib/loaders/device_options.js';
import { ModelCpuOffload } from '../../lib/models/model_cpu_offload.js';
import { PiaError } from '../../lib/errors.js';

function withEnv<T>(name: string, value: string | undefined, fn: () => T): T {
  const saved = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

test("'cpu', and 'auto' without a usable GPU or pinned by PIA_DEVICE, resolve to the CPU", () => {
  assert.deepEqual(resolvePlacement('cpu', undefined), { device: 'cpu', dtype: 'float32' });
  assert.deepEqual(resolvePlacement('cpu', 'bfloat16'), { device: 'cpu', dtype: 'bfloat16' });
  assert.deepEqual(withEnv('PIA_DEVICE', 'cpu', () => resolvePlacement('auto', 'float16')), { device: 'cpu', dtype: 'float16' });
  const auto = withEnv('PIA_DEVICE', undefined, () => resolvePlacement(undefined, undefined));
  assert.equal(auto.device, backends().cuda.available ? 'cuda:0' : 'cpu');
});

test("'cuda' without a usable GPU is E_UNSUPPORTED with the reason; bad values are E_INVALID_ARGUMENT", () => {
  const cuda = backends().cuda;
  if (!cuda.available) {
    for (const device of ['cuda', 'cuda:0', 'cuda:3']) {
      assert.throws(() => resolvePlacement(device, 'float16'), (e: unknown) =>
        e instanceof PiaError && e.code === 'E_UNSUPPORTED' && e.message.includes(cuda.reason!));
    }
    // PIA_DEVICE pins 'auto' only; it is checked like an explicit device.
    assert.throws(() => withEnv('PIA_DEVICE', 'cuda', () => resolvePlacement('auto', undefined)), { code: 'E_UNSUPPORTED' });
  } else {
    assert.deepEqual(resolvePlacement('cuda', 'float16'), { device: 'cuda:0', dtype: 'float16' });
    assert.throws(() => resolvePlacement('cuda:99', undefined), { code: 'E_INVALID_ARGUMENT', option: 'device' });
  }
  assert.throws(() => resolvePlacement('gpu', undefined), { code: 'E_INVALID_ARGUMENT', option: 'device' });
  assert.throws(() => resolvePlacement('cuda:x', undefined), { code: 'E_INVALID_ARGUMENT', option: 'device' });
  assert.throws(() => resolvePlacement('cpu', 'float64'), { code: 'E_INVALID_ARGUMENT', option: 'dtype' });
});

test('a pipeline placement reaches the models it loads; the VAE stays float32 instead of float16', async () => {
  const gpu: ResolvedPlacement = { device: 'cuda:0', dtype: 'float16' };
  await withPipelinePlacement(gpu, async () => {
    await Promise.resolve();  // across an await, as the loaders read files first
    assert.deepEqual(modelPlacement({}), gpu);
    assert.deepEqual(modelPlacement(undefined, true), { device: 'cuda:0', dtype: 'float32' });
    // bfloat16 has float32's range: no upcast.
    await withPipelinePlacement({ device: 'cuda:0', dtype: 'bfloat16' }, async () => {
      assert.deepEqual(modelPlacement(undefined, true), { device: 'cuda:0', dtype: 'bfloat16' });
    });
  });
  const cpu: ResolvedPlacement = { device: 'cpu', dtype: 'float16' };
  await withPipelinePlacement(cpu, async () => {
    assert.deepEqual(modelPlacement(undefined, true), cpu);  // the CPU computes in float32 anyway
    // Explicit model options win over the pipeline's.
    assert.deepEqual(modelPlacement({ dtype: 'bfloat16' }), { device: 'cpu', dtype: 'bfloat16' });
  });
  // Outside a pipeline loader: 'auto'.
  assert.deepEqual(withEnv('PIA_DEVICE', 'cpu', () => modelPlacement(undefined)), { device: 'cpu', dtype: 'float32' });
});

class FakeModel {
  readonly log: string[];
  readonly name: string;
  readonly placement: ResolvedPlacement;
  onDevice = true;
  running = 0;
  constructor(name: string, log: string[], device: ResolvedPlacement['device'] = 'cuda:0') {
    this.name = name;
    this.log = log;
    this.placement = { device, dtype: 'float16' };
  }
  async setResident(onDevice: boolean): Promise<void> {
    assert.equal(this.running, 0, `${this.name} moved while running`);
    await new Promise((r) => setTimeout(r, 1));
    this.onDevice = onDevice;
    this.log.push(`${this.name}:${onDevice ? 'in' : 'out'}`);
  }
  async call(group: ModelCpuOffload): Promise<string> {
    return group.run(this, async () => {
      assert.ok(this.onDevice, `${this.name} ran while offloaded`);
      this.running++;
      await new Promise((r) => setTimeout(r, 2));
      this.running--;
      return this.name;
    });
  }
}

test('model CPU offload keeps only the running network on the GPU and never moves one mid-call', async () => {
  const log: string[] = [];
  const text = new FakeModel('text', log), unet = new FakeModel('unet', log), vae = new FakeModel('vae', log);
  const cpuOnly = new FakeModel('cpu', log, 'cpu');
  const group = new ModelCpuOffload([text, unet, vae, cpuOnly]);
  assert.equal(group.has(cpuOnly), false);
  assert.equal(await text.call(group), 'text');
  assert.deepEqual(log, ['unet:out', 'vae:out']);
  // Calls made together still run one network at a time.
  const results = await Promise.all([unet.call(group), unet.call(group), vae.call(group), text.call(group)]);
  assert.deepEqual(results, ['unet', 'unet', 'vae', 'text']);
  assert.deepEqual(log.slice(2), ['text:out', 'unet:in', 'unet:out', 'vae:in', 'vae:out', 'text:in']);
  assert.deepEqual([text.onDevice, unet.onDevice, vae.onDevice], [true, false, false]);
  // A failing call does not wedge the group.
  await assert.rejects(group.run(unet, async () => { throw new Error('boom'); }), /boom/);
  assert.equal(await vae.call(group), 'vae');
  await group.restore();
  assert.deepEqual([text.onDevice, unet.onDevice, vae.onDevice], [true, true, true]);
  assert.equal(await cpuOnly.call(group), 'cpu');  // not in the group: runs as is
});
