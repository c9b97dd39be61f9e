import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { PiaError } from '../../lib/errors.js';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { Generator, type GeneratorState } from '../../lib/random/index.js';
import { fma32 } from '../../lib/random/f32math.js';
import { fixture } from '../helpers/fixtures.js';

interface RngCase {
  key: string;
  op: 'randn' | 'rand';
  seed: number;
  shape: number[];
  sequence?: number;
  draw_index?: number;
}

const meta = JSON.parse(readFileSync(fixture('golden', 'rng', 'torch_cpu_rng.json'), 'utf8')) as { cases: RngCase[] };
const golden = readSafetensors(fixture('golden', 'rng', 'torch_cpu_rng.safetensors'));
after(() => golden.close());

/** JSON.parse rounds seeds above 2^53, so take the exact digits from the key (`..._s<seed>_...`). */
function exactSeed(c: RngCase): bigint {
  const m = /_s(\d+)_/.exec(c.key);
  if (m) return BigInt(m[1]!);
  assert.ok(Number.isSafeInteger(c.seed), `${c.key}: seed ${c.seed} not exact and not in the key`);
  return BigInt(c.seed);
}

function expected(key: string): Float32Array {
  const t = golden.get(key);
  assert.equal(t.dtype, 'F32', key);
  const data = t.data as Float32Array;
  assert.ok(data instanceof Float32Array, key);
  return data;
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function assertBitEqual(actual: Float32Array, want: Float32Array, label: string): void {
  assert.equal(actual.length, want.length, `${label}: length`);
  const x = bits(actual);
  const y = bits(want);
  let mismatches = 0;
  let first = -1;
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i]) {
      mismatches++;
      if (first < 0) first = i;
    }
  }
  assert.equal(
    mismatches, 0,
    `${label}: ${mismatches}/${x.length} values differ; first at ${first}: got ${actual[first]} want ${want[first]}`,
  );
}

function draw(g: Generator, c: RngCase): Float32Array {
  const t = c.op === 'randn' ? g.randn(c.shape) : g.rand(c.shape);
  assert.deepEqual(t.shape, c.shape);
  return t.data;
}

test('golden: every tensor in the file is described by a case', () => {
  assert.equal(meta.cases.length, 120);
  assert.deepEqual(new Set(golden.names()), new Set(meta.cases.map((c) => c.key)));
});

test('golden: single draws from a freshly seeded generator', () => {
  const single = meta.cases.filter((c) => c.sequence === undefined);
  assert.ok(single.length > 0);
  for (const c of single) {
    const g = new Generator().manualSeed(exactSeed(c));
    assertBitEqual(draw(g, c), expected(c.key), c.key);
  }
});

test('golden: consecutive draws carry state over (seq* cases)', () => {
  const bySeq = new Map<number, RngCase[]>();
  for (const c of meta.cases) {
    if (c.sequence === undefined) continue;
    bySeq.set(c.sequence, [...(bySeq.get(c.sequence) ?? []), c]);
  }
  assert.ok(bySeq.size > 0);
  for (const cases of bySeq.values()) {
    cases.sort((a, b) => a.draw_index! - b.draw_index!);
    assert.ok(cases.every((c) => c.seed === cases[0]!.seed));
    const g = new Generator().manualSeed(exactSeed(cases[0]!));
    for (const c of cases) assertBitEqual(draw(g, c), expected(c.key), c.key);
  }
});

test('known torch values (seed 0)', () => {
  assert.equal(new Generator().manualSeed(0).randn([1]).data[0], Math.fround(1.5409960746765137));
  assert.equal(new Generator().manualSeed(0).rand([1]).data[0], Math.fround(0.49625658988952637));
});

test('seeds: low 32 bits drive mt19937, negatives are two\'s complement', () => {
  const a = new Generator().manualSeed(0).randn([40]).data;
  assertBitEqual(new Generator().manualSeed(2n ** 32n).randn([40]).data, a, '2^32 ≡ 0');
  const m1 = new Generator().manualSeed(2n ** 64n - 1n).randn([5]).data;
  assertBitEqual(new Generator().manualSeed(-1).randn([5]).data, m1, '-1 ≡ 2^64-1');
  assertBitEqual(new Generator().manualSeed(-1n).randn([5]).data, m1, '-1n ≡ 2^64-1');
  assert.equal(new Generator().manualSeed(-1).initialSeed(), 2n ** 64n - 1n);
  assert.equal(new Generator().manualSeed(-(2n ** 63n)).initialSeed(), 2n ** 63n);
  assert.equal(new Generator().initialSeed(), 67280421310721n);
});

test('manualSeed returns this and clears the cached Box–Muller value', () => {
  const g = new Generator();
  assert.equal(g.manualSeed(3), g);
  const first = g.randn([1]).data[0];
  g.randn([1]); // consumes the cached sin value
  g.randn([1]); // leaves a new one cached
  g.manualSeed(3);
  assert.equal(g.randn([1]).data[0], first);
});

test('getState/setState round trip, through JSON', () => {
  const g = new Generator().manualSeed(1234);
  g.randn([100]);
  g.randn([3]); // odd count: a cached normal is part of the state
  const saved = JSON.parse(JSON.stringify(g.getState())) as GeneratorState;
  assert.notEqual(saved.normalCache, null);
  const after = [g.randn([5]).data, g.rand([17]).data, g.randn([33]).data, g.randn([1]).data];
  g.setState(saved);
  const again = [g.randn([5]).data, g.rand([17]).data, g.randn([33]).data, g.randn([1]).data];
  after.forEach((a, i) => assertBitEqual(again[i]!, a, `draw ${i}`));

  const other = new Generator().setState(saved);
  assertBitEqual(other.randn([5]).data, after[0]!, 'fresh generator from state');
  assert.equal(other.initialSeed(), 1234n);

  // State right after seeding (next draw twists) and across a 624-word block boundary.
  const fresh = new Generator().manualSeed(9);
  const s0 = fresh.getState();
  assert.equal(s0.normalCache, null);
  const big = fresh.rand([1000]).data;
  assertBitEqual(new Generator().setState(s0).rand([1000]).data, big, 'from seeded state');
});

test('empty shapes draw nothing', () => {
  const g = new Generator().manualSeed(5);
  assert.equal(g.randn([0, 3]).data.length, 0);
  assert.deepEqual(g.rand([2, 0]).shape, [2, 0]);
  assertBitEqual(g.randn([20]).data, new Generator().manualSeed(5).randn([20]).data, 'after empty draws');
  assert.equal(g.randn([]).data.length, 1); // scalar
});

test('invalid arguments raise PiaError E_INVALID_ARGUMENT', () => {
  const isInvalid = (option: string) => (e: unknown) =>
    e instanceof PiaError && e.code === 'E_INVALID_ARGUMENT' && e.option === option;
  const g = new Generator();
  for (const bad of [1.5, NaN, Infinity, -Infinity, 2 ** 60, '5', null]) {
    assert.throws(() => g.manualSeed(bad as number), isInvalid('seed'), String(bad));
  }
  for (const bad of [2n ** 64n, -(2n ** 63n) - 1n]) {
    assert.throws(() => g.manualSeed(bad), isInvalid('seed'), String(bad));
  }
  for (const bad of [[-1], [1.5], [2, NaN], ['3'], 'abc', null, [2 ** 31, 2]]) {
    assert.throws(() => g.randn(bad as number[]), isInvalid('shape'), JSON.stringify(bad));
    assert.throws(() => g.rand(bad as number[]), isInvalid('shape'), JSON.stringify(bad));
  }
  const ok = g.getState();
  const broken: unknown[] = [
    null,
    {},
    { ...ok, kind: 'other' },
    { ...ok, mt: ok.mt.slice(1) },
    { ...ok, mt: ok.mt.map((w, i) => (i === 7 ? -1 : w)) },
    { ...ok, index: 625 },
    { ...ok, index: 1.5 },
    { ...ok, normalCache: 'x' },
    { ...ok, normalCache: undefined },
    { ...ok, seed: 5 },
    { ...ok, seed: '-1' },
  ];
  for (const bad of broken) {
    assert.throws(() => g.setState(bad as GeneratorState), isInvalid('state'), JSON.stringify(bad));
  }
});

/** Exact round-to-nearest-even of a·b + c to f32, via BigInt (normal f32 range). */
function fmaReference(a: number, b: number, c: number): number {
  const split = (v: number): [bigint, number] => {
    if (v === 0) return [0n, 0];
    const e = Math.floor(Math.log2(Math.abs(v))) - 60;
    return [BigInt(v / 2 ** e), e]; // v / 2^e is an integer below 2^61, exact
  };
  const [ma, ea] = split(a);
  const [mb, eb] = split(b);
  const [mc, ec] = split(c);
  let mp = ma * mb;
  let ep = ea + eb;
  let m = mc;
  let e = ec;
  if (mp === 0n) [mp, ep] = [0n, e];
  if (m === 0n) [m, e] = [0n, ep];
  const lo = Math.min(ep, e);
  const sum = mp * 2n ** BigInt(ep - lo) + m * 2n ** BigInt(e - lo);
  if (sum === 0n) return 0;
  const neg = sum < 0n;
  let mag = neg ? -sum : sum;
  const shift = mag.toString(2).length - 24;
  let exp = lo;
  if (shift > 0) {
    const q = mag >> BigInt(shift);
    const rem = mag - (q << BigInt(shift));
    const half = 1n << BigInt(shift - 1);
    mag = rem > half || (rem === half && (q & 1n) === 1n) ? q + 1n : q;
    exp += shift;
  }
  const v = Number(mag) * 2 ** exp;
  return neg ? -v : v;
}

test('fma32 rounds once, including double-rounding traps', () => {
  let seed = 12345;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const f = Math.fround;
  const cases: [number, number, number][] = [];
  for (let i = 0; i < 20000; i++) {
    const a = f((rnd() - 0.5) * 2 ** Math.floor(rnd() * 10 - 5));
    const b = f((rnd() - 0.5) * 2 ** Math.floor(rnd() * 10 - 5));
    const c = f((rnd() - 0.5) * 2 ** Math.floor(rnd() * 10 - 5));
    cases.push([a, b, c]);
  }
  // Double-rounding traps: a·b lands a tiny sliver off half an f32 ulp of c, so the double sum
  // is exactly an f32 midpoint and a plain fround(a·b + c) rounds the wrong way half the time.
  // 5·13·29·1429 × 113·14449 = 2^42 + 1 and (2^23 − 1)(2^23 + 1) = 2^46 − 1.
  const traps: [number, number, number][] = [[2693665, 1632737, -66], [2 ** 23 - 1, 2 ** 23 + 1, -70]];
  for (let k = 0; k < 4000; k++) {
    const [A, B, s] = traps[k % 2]!;
    const e = Math.floor(rnd() * 20 - 10);
    const c = f((1 + Math.floor(rnd() * 2 ** 23) * 2 ** -23) * 2 ** e) * (rnd() < 0.5 ? 1 : -1);
    const sign = rnd() < 0.5 ? 1 : -1;
    const a = sign * A * 2 ** (s / 2 + e);
    const b = B * 2 ** (s / 2);
    cases.push([a, b, c]);
  }
  for (const [a, b, c] of cases) {
    const got = fma32(a, b, c);
    const want = fmaReference(a, b, c);
    assert.ok(Object.is(got, want) || got === want, `fma32(${a}, ${b}, ${c}) = ${got}, want ${want}`);
  }
});
