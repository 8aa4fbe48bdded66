// HostChooser over hand-built health snapshots: the primary (split-brain rule, breakers, avoid,
// never banning every host), replica filtering (down, weight 0, lag, minLsn, breakers, avoid),
// the three load-balance policies with exact or bounded proportions, each readsFromPrimary mode,
// and the LSN text codec.

import { seededRandom } from '../../support/random.ts';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { claimPrimary, consideredUp, formatLsn, HostChooser, parseLsn, type ChoiceOptions, type HostView } from '../../../src/pool/host-choice.ts';

function host(id: string, fields: Partial<HostView> = {}): HostView {
  return { id, role: 'replica', up: true, weight: 1, activeConnections: 0, ...fields };
}

const PRIMARY = host('p:5432', { role: 'primary' });

function chooser(options: Partial<ChoiceOptions> = {}): HostChooser {
  return new HostChooser({ loadBalance: 'round-robin', maxReplicaLag: {}, readsFromPrimary: 'fallback', ...options });
}

function picks(choose: HostChooser, hosts: readonly HostView[], count: number): string[] {
  return Array.from({ length: count }, () => {
    const choice = choose.replica(hosts);
    assert.equal(choice.reason, 'replica');
    return choice.host?.id ?? 'none';
  });
}

function tally(ids: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
}


test('primary: the one up primary; none is no-primary; two up primaries are refused', () => {
  const choose = chooser();
  const downPrimary = host('old:5432', { role: 'primary', up: false });
  assert.deepEqual(choose.primary([host('r1'), downPrimary, PRIMARY]), { host: PRIMARY, reason: 'primary' });
  assert.deepEqual(choose.primary([host('r1'), downPrimary, host('u', { role: 'unknown' })]), { host: null, reason: 'no-primary' });
  const other = host('q:5432', { role: 'primary' });
  assert.deepEqual(choose.primary([PRIMARY, host('r1'), other]), { host: null, reason: 'two-primaries' });
});

test('primary: one chooser follows roles that change in place, and agrees with claimPrimary on every mix of roles and health', () => {
  const choose = chooser();
  const a = host('a:5432', { role: 'primary' });
  const b = host('b:5432');
  const first = choose.primary([a, b]);
  assert.equal(first.host, a);
  assert.equal(choose.primary([a, b]), first, 'the same answer object while a stays the primary');
  // A failover as the health loop records it: the same host objects, roles and health changed.
  a.up = false;
  b.role = 'primary';
  assert.deepEqual(choose.primary([a, b]), { host: b, reason: 'primary' });
  a.up = true;
  a.failures = 2;
  assert.deepEqual(choose.primary([a, b]), { host: b, reason: 'primary' }, 'the old primary still claims it, but its probes fail');
  // Every combination of role, up and failures over three hosts: the answer is claimPrimary's.
  const roles = ['primary', 'replica', 'unknown'] as const;
  for (let mix = 0; mix < 18 ** 3; mix++) {
    const hosts = [0, 1, 2].map((i) => {
      const code = Math.floor(mix / 18 ** i) % 18;
      return host(`h${i}:5432`, { role: roles[code % 3]!, up: Math.floor(code / 3) % 2 === 0, failures: Math.floor(code / 6) });
    });
    const claim = claimPrimary(consideredUp(hosts));
    const expected = claim.kind === 'one' ? { host: claim.host, reason: 'primary' } : { host: null, reason: claim.kind === 'none' ? 'no-primary' : 'two-primaries' };
    assert.deepEqual(choose.primary(hosts), expected, JSON.stringify(hosts));
  }
});

test('round-robin is nginx smooth weighted round-robin: weights 5,1,1 give a,a,b,a,c,a,a', () => {
  const hosts = [host('a', { weight: 5 }), host('b'), host('c'), PRIMARY];
  const choose = chooser();
  const expected = ['a', 'a', 'b', 'a', 'c', 'a', 'a'];
  assert.deepEqual(picks(choose, hosts, 14), [...expected, ...expected]);
});

test('round-robin weights 1,1,8: the canary takes exactly 1 in 10, spread out, over 100 picks', () => {
  const hosts = [host('canary'), host('b'), host('main', { weight: 8 })];
  const sequence = picks(chooser(), hosts, 100);
  assert.deepEqual(tally(sequence), { canary: 10, b: 10, main: 80 });
  for (let cycle = 0; cycle < 10; cycle++) {
    const window = tally(sequence.slice(cycle * 10, cycle * 10 + 10));
    assert.deepEqual(window, { canary: 1, b: 1, main: 8 }, `cycle ${cycle}`);
  }
});

test('round-robin with equal weights alternates, and carries on across setOptions', () => {
  const hosts = [host('a'), host('b'), host('c')];
  const choose = chooser();
  assert.deepEqual(picks(choose, hosts, 2), ['a', 'b']);
  choose.setOptions({ loadBalance: 'round-robin', maxReplicaLag: {}, readsFromPrimary: 'fallback' });
  assert.deepEqual(picks(choose, hosts, 4), ['c', 'a', 'b', 'c']);
});

test('random with a seeded PRNG approximates the weights over 10,000 picks, and is repeatable', () => {
  const hosts = [host('a', { weight: 6 }), host('b', { weight: 3 }), host('c', { weight: 1 })];
  const first = picks(chooser({ loadBalance: 'random', random: seededRandom(42) }), hosts, 10_000);
  const counts = tally(first);
  assert.ok(counts.a! > 5800 && counts.a! < 6200, `a: ${counts.a}`);
  assert.ok(counts.b! > 2800 && counts.b! < 3200, `b: ${counts.b}`);
  assert.ok(counts.c! > 900 && counts.c! < 1100, `c: ${counts.c}`);
  assert.deepEqual(picks(chooser({ loadBalance: 'random', random: seededRandom(42) }), hosts, 10_000), first);
});

test('random maps the injected number onto weight ranges, including the top edge', () => {
  const hosts = [host('a', { weight: 3 }), host('b', { weight: 1 })];
  const pickAt = (value: number): string | undefined =>
    chooser({ loadBalance: 'random', random: () => value }).replica(hosts).host?.id;
  assert.deepEqual([0, 0.74, 0.75, 0.99, 1].map(pickAt), ['a', 'a', 'b', 'b', 'b']);
});

test('least-connections picks the fewest connections per unit of weight', () => {
  const choose = chooser({ loadBalance: 'least-connections' });
  const hosts = [host('a', { activeConnections: 5 }), host('b', { activeConnections: 8, weight: 4 }), host('c', { activeConnections: 3 })];
  assert.equal(choose.replica(hosts).host?.id, 'b'); // 8/4 = 2 beats 3/1 and 5/1
  const busier = [host('a', { activeConnections: 5 }), host('b', { activeConnections: 16, weight: 4 }), host('c', { activeConnections: 3 })];
  assert.equal(choose.replica(busier).host?.id, 'c'); // 3/1 beats 16/4 = 4 and 5/1
});

test('least-connections breaks ties by smooth weighted round-robin among the tied hosts', () => {
  const choose = chooser({ loadBalance: 'least-connections' });
  const hosts = [host('a', { activeConnections: 2 }), host('b', { activeConnections: 4, weight: 2 }), host('c', { activeConnections: 9 })];
  // a (2/1) and b (4/2) tie; weights 1:2 alternate as b,a,b then repeat.
  assert.deepEqual(picks(choose, hosts, 6), ['b', 'a', 'b', 'b', 'a', 'b']);
});

test('down replicas, weight-0 replicas and non-replicas are never chosen for reads', () => {
  const hosts = [PRIMARY, host('down', { up: false, weight: 100 }), host('drained', { weight: 0 }), host('u', { role: 'unknown' }), host('ok')];
  for (const loadBalance of ['round-robin', 'random', 'least-connections'] as const) {
    const choose = chooser({ loadBalance, random: seededRandom(7) });
    assert.deepEqual(new Set(picks(choose, hosts, 50)), new Set(['ok']), loadBalance);
  }
});

test('replicas lagging beyond either bound, or with unknown lag, are skipped', () => {
  const hosts = [
    host('bytes-behind', { lagBytes: 2_000_000, lagMs: 10 }),
    host('ms-behind', { lagBytes: 10, lagMs: 5_000 }),
    host('unknown', { lagMs: 10 }),
    host('fresh', { lagBytes: 1_000_000, lagMs: 1_000 }),
  ];
  const choose = chooser({ maxReplicaLag: { bytes: 1_000_000, ms: 1_000 } });
  assert.deepEqual(new Set(picks(choose, hosts, 8)), new Set(['fresh']));
  const bytesOnly = chooser({ maxReplicaLag: { bytes: 1_000_000 } });
  assert.deepEqual(new Set(picks(bytesOnly, hosts, 8)), new Set(['ms-behind', 'fresh']));
  assert.deepEqual(new Set(picks(chooser(), hosts, 8)), new Set(hosts.map((h) => h.id))); // no bounds: lag not looked at
});

test('minLsn keeps only replicas that have replayed it', () => {
  const hosts = [host('behind', { replayLsn: 0x16_b374d847n }), host('at', { replayLsn: 0x16_b374d848n }), host('ahead', { replayLsn: 0x17_00000000n }), host('unknown')];
  const choose = chooser();
  const chosen = Array.from({ length: 6 }, () => choose.replica(hosts, { minLsn: parseLsn('16/B374D848') }).host?.id);
  assert.deepEqual(new Set(chosen), new Set(['at', 'ahead']));
  const strict = chooser({ readsFromPrimary: 'never' });
  assert.deepEqual(strict.replica(hosts, { minLsn: 0x18_00000000n }), { host: null, reason: 'no-replica:lsn-not-replayed' });
});

test("readsFromPrimary 'fallback' reads from the primary and names why no replica would do", () => {
  const choose = chooser({ maxReplicaLag: { ms: 100 } });
  const cases: [HostView[], string][] = [
    [[PRIMARY, host('r', { up: false })], 'fallback:no-replica-up'],
    [[PRIMARY], 'fallback:no-replica-up'],
    [[PRIMARY, host('r', { weight: 0, lagMs: 0 })], 'fallback:all-weight-zero'],
    [[PRIMARY, host('r', { lagMs: 500 })], 'fallback:all-lagging'],
  ];
  for (const [hosts, reason] of cases) assert.deepEqual(choose.replica(hosts), { host: PRIMARY, reason });
  const lsnCase = choose.replica([PRIMARY, host('r', { lagMs: 0, replayLsn: 5n })], { minLsn: 6n });
  assert.deepEqual(lsnCase, { host: PRIMARY, reason: 'fallback:lsn-not-replayed' });
  const unknown = host('u', { role: 'unknown' });
  assert.deepEqual(choose.replica([host('r', { up: false }), unknown]), { host: null, reason: 'no-replica:no-replica-up,no-primary' });
  const other = host('q:5432', { role: 'primary' });
  assert.deepEqual(choose.replica([PRIMARY, other]), { host: null, reason: 'no-replica:no-replica-up,two-primaries' });
  assert.deepEqual(choose.replica([PRIMARY, host('r', { lagMs: 0 })]), { host: host('r', { lagMs: 0 }), reason: 'replica' });
});

test('with replicas stopped by different filters, the reason is the furthest filter any of them passed, whatever their order', () => {
  const choose = chooser({ readsFromPrimary: 'never', maxReplicaLag: { ms: 100 } });
  const down = host('down', { up: false, lagMs: 0 });
  const unweighted = host('zero', { weight: 0, lagMs: 0 });
  const lagging = host('lag', { lagMs: 500 });
  const behind = host('behind', { lagMs: 0, replayLsn: 5n });
  const cases: [HostView[], string][] = [
    [[unweighted, down], 'no-replica:all-weight-zero'],
    [[lagging, unweighted, down], 'no-replica:all-lagging'],
    [[unweighted, lagging], 'no-replica:all-lagging'],
    [[behind, lagging, unweighted], 'no-replica:lsn-not-replayed'],
    [[lagging, behind], 'no-replica:lsn-not-replayed'],
  ];
  for (const [hosts, reason] of cases) assert.deepEqual(choose.replica([PRIMARY, ...hosts], { minLsn: 6n }), { host: null, reason }, reason);
  // Without minLsn the one behind serves; the reused answer of the call before does not leak into this one.
  assert.equal(choose.replica([PRIMARY, lagging, behind]).host?.id, 'behind');
  assert.deepEqual(choose.replica([PRIMARY, lagging]), { host: null, reason: 'no-replica:all-lagging' });
});

test("readsFromPrimary 'never' returns no host with a named reason", () => {
  const choose = chooser({ readsFromPrimary: 'never', maxReplicaLag: { bytes: 10 } });
  assert.deepEqual(choose.replica([PRIMARY, host('r', { lagBytes: 11 })]), { host: null, reason: 'no-replica:all-lagging' });
  assert.deepEqual(choose.replica([PRIMARY]), { host: null, reason: 'no-replica:no-replica-up' });
  assert.deepEqual(choose.replica([PRIMARY, host('r', { weight: 0 })]), { host: null, reason: 'no-replica:all-weight-zero' });
  assert.equal(choose.replica([PRIMARY, host('r', { lagBytes: 10 })]).host?.id, 'r');
});

test("readsFromPrimary 'always' reads from the primary even with healthy replicas, and refuses split brain", () => {
  const choose = chooser({ readsFromPrimary: 'always' });
  assert.deepEqual(choose.replica([host('r1'), PRIMARY, host('r2')]), { host: PRIMARY, reason: 'always-primary' });
  assert.deepEqual(choose.replica([host('r1')]), { host: null, reason: 'no-primary' });
  assert.deepEqual(choose.replica([PRIMARY, host('q', { role: 'primary' })]), { host: null, reason: 'two-primaries' });
});

test('setOptions swaps the policy on reload', () => {
  const hosts = [PRIMARY, host('r', { lagMs: 50 })];
  const choose = chooser({ maxReplicaLag: { ms: 100 } });
  assert.equal(choose.replica(hosts).reason, 'replica');
  choose.setOptions({ loadBalance: 'round-robin', maxReplicaLag: { ms: 10 }, readsFromPrimary: 'never' });
  assert.deepEqual(choose.replica(hosts), { host: null, reason: 'no-replica:all-lagging' });
});

test('parseLsn and formatLsn round-trip, accept zero padding and reject malformed text', () => {
  assert.equal(parseLsn('16/B374D848'), 0x16_b374d848n);
  assert.equal(parseLsn('0/0'), 0n);
  assert.equal(parseLsn('00000000/0000000A'), 10n);
  assert.equal(parseLsn('ffffffff/ffffffff'), (1n << 64n) - 1n);
  for (const text of ['16/B374D848', '0/0', '0/1', '1/0', 'FFFFFFFF/FFFFFFFF', 'A/1234']) {
    assert.equal(formatLsn(parseLsn(text)), text);
  }
  for (const lsn of [0n, 1n, 0xffffffffn, 0x1_00000000n, 0x16_b374d848n, (1n << 64n) - 1n]) assert.equal(parseLsn(formatLsn(lsn)), lsn);
  for (const bad of ['', '16', '16/', '/B374D848', '16/B374D848/1', '16-B374D848', 'G/0', '0/123456789', ' 0/0', '0/0 ', '-1/0', '0x16/1']) {
    assert.throws(() => parseLsn(bad), /invalid LSN/, JSON.stringify(bad));
  }
  assert.throws(() => formatLsn(-1n), RangeError);
  assert.throws(() => formatLsn(1n << 64n), RangeError);
});

test('split-brain rule: of several primaries, the one whose last probe succeeded is the primary; two such are refused', () => {
  const choose = chooser();
  const oldPrimary = host('old:5432', { role: 'primary', failures: 2 });
  const promoted = host('new:5432', { role: 'primary', failures: 0 });
  assert.deepEqual(choose.primary([oldPrimary, host('r1'), promoted]), { host: promoted, reason: 'primary' });
  const unprobedFailures = host('q:5432', { role: 'primary' });
  assert.deepEqual(choose.primary([oldPrimary, unprobedFailures]), { host: unprobedFailures, reason: 'primary' }, 'absent failures count as 0');
  assert.deepEqual(choose.primary([promoted, unprobedFailures]), { host: null, reason: 'two-primaries' });
  assert.deepEqual(choose.primary([oldPrimary, host('other:5432', { role: 'primary', failures: 1 })]), { host: null, reason: 'two-primaries' });
  assert.deepEqual(claimPrimary([oldPrimary, promoted, unprobedFailures]), { kind: 'two', hosts: [promoted, unprobedFailures] });
});

test('an open breaker or an avoided primary makes it unusable, but never makes another host the primary', () => {
  const choose = chooser();
  const broken = host('p:5432', { role: 'primary', breaker: 'open' });
  assert.deepEqual(choose.primary([broken, host('r1')]), { host: null, reason: 'primary-unavailable' });
  assert.deepEqual(choose.primary([PRIMARY, host('r1')], { avoid: ['p:5432'] }), { host: null, reason: 'primary-unavailable' });
  const halfOpen = host('p:5432', { role: 'primary', breaker: 'half-open' });
  assert.equal(choose.primary([halfOpen]).host, halfOpen, 'half-open lets a trial through');
  // A live second primary behind an open breaker is still a split brain, not a spare.
  const other = host('q:5432', { role: 'primary', breaker: 'open' });
  assert.deepEqual(choose.primary([PRIMARY, other]), { host: null, reason: 'two-primaries' });
});

test('reads skip replicas with an open breaker and the ones the request avoids', () => {
  const choose = chooser();
  const hosts = [PRIMARY, host('r1', { breaker: 'open' }), host('r2'), host('r3')];
  const seen = new Set(Array.from({ length: 6 }, () => choose.replica(hosts, { avoid: ['r3'] }).host?.id));
  assert.deepEqual(seen, new Set(['r2']));
  assert.deepEqual(choose.replica(hosts, { avoid: ['r2', 'r3'] }), { host: PRIMARY, reason: 'fallback:no-replica-up' });
  assert.deepEqual(choose.replica(hosts, { avoid: ['r2', 'r3', 'p:5432'] }), { host: null, reason: 'no-replica:no-replica-up,primary-unavailable' });
});

test('never ban every host: when all are down, routing ignores up, but not open breakers', () => {
  const choose = chooser();
  const primaryDown = host('p:5432', { role: 'primary', up: false, failures: 3 });
  const replicaDown = host('r1', { up: false, failures: 3 });
  assert.deepEqual(choose.primary([primaryDown, replicaDown]), { host: primaryDown, reason: 'primary' });
  assert.deepEqual(choose.replica([primaryDown, replicaDown]), { host: replicaDown, reason: 'replica' });
  assert.deepEqual(choose.primary([primaryDown, host('r1')]), { host: null, reason: 'no-primary' }, 'one host up: the down ones stay banned');
  const brokenDown = host('r1', { up: false, breaker: 'open' });
  assert.deepEqual(choose.replica([primaryDown, brokenDown]), { host: primaryDown, reason: 'fallback:no-replica-up' });
  assert.deepEqual(consideredUp([primaryDown, replicaDown]), [primaryDown, replicaDown]);
});

test('reads prefer replicas whose last probe and last connect worked, and fall back to the others', () => {
  const choose = chooser();
  const failingProbe = host('r1', { failures: 1 });
  const failingConnect = host('r2', { connectFailures: 2 });
  const good = host('r3');
  assert.deepEqual(picks(choose, [failingProbe, failingConnect, good, PRIMARY], 4), ['r3', 'r3', 'r3', 'r3']);
  assert.deepEqual(tally(picks(choose, [failingProbe, failingConnect, PRIMARY], 4)), { r1: 2, r2: 2 }, 'all suspect: still used, not banned');
  const withLsn = choose.replica([host('r1', { connectFailures: 1, replayLsn: 10n }), host('r2', { replayLsn: 5n }), PRIMARY], { minLsn: 8n });
  assert.equal(withLsn.host?.id, 'r1', 'the one caught-up replica is used though its last connect failed');
});
