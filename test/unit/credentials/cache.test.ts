// CredentialCache on a FakeClock with a scripted provider: one fetch per login however many ask,
// refresh ahead of expiry (80% of the lifetime, or expiry minus the margin), a failed refresh
// keeping the last good secret and retrying with backoff, and the rejected-login paths: a fresh
// value, the value a rotation replaced, a change awaited until the deadline, and nothing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CredentialCache, type CredentialEvent } from '../../../src/credentials/cache.ts';
import type { CredentialProvider, LoginTarget, Secret } from '../../../src/credentials/provider.ts';
import { AmbassadorError } from '../../../src/errors.ts';
import { FakeClock } from '../../../src/lib/clock.ts';

const LOGIN: LoginTarget = { host: 'db1', port: 5432, user: 'app' };

/** Answers fetches from `source` (a secret, or an error to throw), recording when it was asked. */
class ScriptedProvider implements CredentialProvider {
  readonly kind = 'scripted';
  readonly token = false;
  fetchedAt: number[] = [];
  /** A secret, an error to throw, or a function making a new secret at each fetch. */
  source: Secret | Error | (() => Secret) = { password: 'one' };
  private changeListener: (() => void) | null = null;

  constructor(
    private readonly clock: FakeClock,
    readonly rotates = true,
    readonly refreshMarginMs?: number,
  ) {}

  async fetch(): Promise<Secret> {
    this.fetchedAt.push(this.clock.now());
    if (this.source instanceof Error) throw this.source;
    return typeof this.source === 'function' ? this.source() : { ...this.source };
  }

  watch(onChange: () => void): () => void {
    this.changeListener = onChange;
    return () => (this.changeListener = null);
  }

  /** Simulates the watched source changing. */
  changed(): void {
    this.changeListener?.();
  }
}

function setup(options: { rotates?: boolean; marginMs?: number; start?: number } = {}) {
  const clock = new FakeClock(options.start ?? 1_000_000);
  const provider = new ScriptedProvider(clock, options.rotates ?? true, options.marginMs);
  const events: CredentialEvent[] = [];
  const cache = new CredentialCache(provider, { clock, onEvent: (event) => events.push(event) });
  const expiring = (password: string, lifetimeMs: number): Secret => ({ password, expiresAt: new Date(clock.now() + lifetimeMs) });
  return { clock, provider, cache, events, expiring };
}

test('concurrent first logins share one fetch; later ones use the cached secret', async () => {
  const { provider, cache } = setup();
  const leases = await Promise.all([cache.get(LOGIN), cache.get(LOGIN), cache.get(LOGIN)]);
  assert.deepEqual(leases.map((lease) => lease.password), ['one', 'one', 'one']);
  assert.equal(provider.fetchedAt.length, 1);
  await cache.get(LOGIN);
  assert.equal(provider.fetchedAt.length, 1);
  await cache.get({ ...LOGIN, host: 'db2' });
  assert.equal(provider.fetchedAt.length, 2, 'another host is another login');
});

test('a secret that expires in 3 s is refreshed at 80% of its lifetime, each time', async () => {
  const { clock, provider, cache, expiring } = setup();
  const start = clock.now();
  let issued = 0;
  provider.source = () => expiring(`t${++issued}`, 3000);
  await cache.get(LOGIN);
  await clock.advanceAsync(7300);
  // Refreshes ran 2.4 s after each fetch; the secret returned is always unexpired.
  assert.deepEqual(provider.fetchedAt.map((at) => at - start), [0, 2400, 4800, 7200]);
  const lease = await cache.get(LOGIN);
  assert.equal(lease.password, 't4');
  assert.ok(lease.expiresAt!.getTime() > clock.now(), 'the cached secret is still valid');
  cache.close();
});

test('a configured margin refreshes at expiry minus the margin, unless it would eat most of the lifetime', async () => {
  const { clock, provider, cache, expiring } = setup({ marginMs: 5 * 60_000 });
  const start = clock.now();
  provider.source = expiring('t1', 15 * 60_000);
  await cache.get(LOGIN);
  assert.deepEqual(clock.pending(), [10 * 60_000], '15-minute token, 5-minute margin: refresh at 10 minutes');
  await clock.advanceAsync(10 * 60_000);
  assert.deepEqual(provider.fetchedAt.map((at) => at - start), [0, 10 * 60_000]);

  // A 3 s secret with a 5-minute margin: expiry minus margin is already past, so 80% it is.
  provider.source = expiring('short', 3000);
  await cache.refreshAll('reload');
  assert.deepEqual(clock.pending(), [2400]);
  cache.close();
});

test('a failed refresh keeps the last good secret, retries with backoff, and fails once the secret expired', async () => {
  const { clock, provider, cache, events, expiring } = setup();
  provider.source = expiring('good', 60_000);
  await cache.get(LOGIN);
  provider.source = new AmbassadorError('CREDENTIALS_UNAVAILABLE', 'token endpoint down');
  await clock.advanceAsync(48_000); // the scheduled refresh at 80% fails
  const failures = () => events.filter((event) => event.type === 'credential-refresh-failed').length;
  assert.equal(failures(), 1);
  assert.equal((await cache.get(LOGIN)).password, 'good', 'still valid: the last good secret serves');
  assert.deepEqual(clock.pending(), [1000], 'retries after the minimum interval');
  await clock.advanceAsync(1000);
  assert.deepEqual(clock.pending(), [2000], 'then backs off');
  await clock.advanceAsync(2000);
  assert.deepEqual(clock.pending(), [4000]);
  assert.equal(failures(), 3);
  // Past its expiry the secret is no fallback: a login needs a fetch, and that fails.
  await clock.advanceAsync(12_000);
  await assert.rejects(cache.get(LOGIN), /token endpoint down/);
  // The source recovers: the next login fetches and succeeds.
  provider.source = expiring('recovered', 60_000);
  assert.equal((await cache.get(LOGIN)).password, 'recovered');
  cache.close();
});

test('a reload whose fetch fails is reported as failed, though the last good secret is kept', async () => {
  const { provider, cache } = setup();
  await cache.get(LOGIN);
  await cache.get({ ...LOGIN, host: 'db2' });
  provider.source = new AmbassadorError('CREDENTIALS_UNAVAILABLE', 'vault sealed');
  assert.deepEqual(await cache.refreshAll('reload'), { refreshed: 0, failed: 2 });
  assert.equal((await cache.get(LOGIN)).password, 'one');
  provider.source = { password: 'two' };
  assert.deepEqual(await cache.refreshAll('reload'), { refreshed: 2, failed: 0 });
});

test('a secret that comes back already expired counts as a failed fetch', async () => {
  const { clock, provider, cache, events } = setup();
  provider.source = { password: 'stale', expiresAt: new Date(clock.now() - 1) };
  await assert.rejects(cache.get(LOGIN), /too soon to use/);
  assert.equal(events[0]!.type, 'credential-refresh-failed');
});

test('a rejected secret is retried with the fresh value when the source already changed', async () => {
  const { clock, provider, cache, events } = setup();
  const lease = await cache.get(LOGIN);
  provider.source = { password: 'two' };
  await clock.advanceAsync(1000);
  const retry = await cache.rejected(LOGIN, lease, 5000);
  assert.equal(retry?.password, 'two');
  assert.equal(provider.fetchedAt.length, 2, 'one forced fetch');
  assert.deepEqual(events.filter((event) => event.type === 'credential-rejected').map((event) => event.retry), ['fresh']);
});

test('a rotated secret the server does not know yet falls back to the one it replaced', async () => {
  // The file was rewritten before ALTER ROLE ran: the new password fails, the old one works.
  const { clock, provider, cache } = setup();
  const old = await cache.get(LOGIN);
  cache.accepted(LOGIN, old);
  provider.source = { password: 'two' };
  provider.changed();
  await clock.advanceAsync(100);
  const fresh = await cache.get(LOGIN);
  assert.equal(fresh.password, 'two');
  await clock.advanceAsync(1000);
  const retry = await cache.rejected(LOGIN, fresh, 5000);
  assert.equal(retry?.password, 'one', 'the replaced secret');
  // Once the server takes the new one, the old one is dropped.
  cache.accepted(LOGIN, fresh);
  await clock.advanceAsync(1000);
  assert.equal(await cache.rejected(LOGIN, fresh, 0), null);
});

test('a rejected login waits for the source to change (ALTER ROLE ran before the file was rewritten)', async () => {
  const { clock, provider, cache } = setup();
  const lease = await cache.get(LOGIN);
  cache.accepted(LOGIN, lease);
  await clock.advanceAsync(1000);
  const pending = cache.rejected(LOGIN, lease, 5000);
  await clock.advanceAsync(600);
  provider.source = { password: 'two' };
  await clock.advanceAsync(300);
  const retry = await pending;
  assert.equal(retry?.password, 'two');
});

test('no change by the deadline gives null, and the next rejections of that secret answer at once', async () => {
  const { clock, provider, cache, events } = setup();
  const lease = await cache.get(LOGIN);
  cache.accepted(LOGIN, lease);
  await clock.advanceAsync(1000);
  const pending = cache.rejected(LOGIN, lease, 2000);
  await clock.advanceAsync(2000);
  assert.equal(await pending, null);
  const fetches = provider.fetchedAt.length;
  assert.ok(fetches > 2, 'the source was polled while waiting');
  assert.equal(await cache.rejected(LOGIN, lease, 2000), null, 'answered without waiting');
  assert.equal(clock.pending().length, 0, 'no poll scheduled');
  assert.ok(events.filter((event) => event.type === 'credential-rejected').every((event) => event.retry === 'none'));
});

test('a secret that never worked (a typo, a role that does not exist) is not waited for', async () => {
  const { clock, provider, cache } = setup();
  const lease = await cache.get(LOGIN);
  await clock.advanceAsync(1000);
  assert.equal(await cache.rejected(LOGIN, lease, 5000), null);
  assert.equal(provider.fetchedAt.length, 2, 'one forced fetch, no polling');
  assert.equal(clock.pending().length, 0);
});

test('rejections sharing a wait each stop at their own deadline; the poll runs to the latest', async () => {
  const { clock, provider, cache } = setup();
  const lease = await cache.get(LOGIN);
  cache.accepted(LOGIN, lease);
  await clock.advanceAsync(1000);
  const probe = cache.rejected(LOGIN, lease, 1000); // a health probe's short timeout
  const client = cache.rejected(LOGIN, lease, 5000);
  await clock.advanceAsync(1000);
  assert.equal(await probe, null, 'the probe gave up at its deadline');
  provider.source = { password: 'two' };
  await clock.advanceAsync(500);
  assert.equal((await client)?.password, 'two', 'the client, with more time, got the rotated secret');
});

test('a reload that finds a fetch in flight fetches again: the earlier one may have read the old value', async () => {
  const clock = new FakeClock(0);
  let release: (secret: Secret) => void = () => {};
  let fetches = 0;
  const provider: CredentialProvider = {
    kind: 'slow',
    rotates: true,
    token: false,
    fetch: () => {
      fetches++;
      return fetches === 2 ? new Promise<Secret>((resolve) => (release = resolve)) : Promise.resolve({ password: `v${fetches}` });
    },
  };
  const cache = new CredentialCache(provider, { clock });
  assert.equal((await cache.get(LOGIN)).password, 'v1');
  const first = cache.refreshAll('reload'); // fetch 2 starts, reading the source before the change
  await new Promise((resolve) => setImmediate(resolve));
  const second = cache.refreshAll('reload'); // the source changed meanwhile: SIGHUP again
  release({ password: 'old' });
  await Promise.all([first, second]);
  assert.equal(fetches, 3);
  assert.equal((await cache.get(LOGIN)).password, 'v3', 'the value read after the second reload wins');
});

test('a fixed password is fetched once more after a rejection, never waited for', async () => {
  const { clock, provider, cache } = setup({ rotates: false });
  const lease = await cache.get(LOGIN);
  await clock.advanceAsync(1000);
  assert.equal(await cache.rejected(LOGIN, lease, 5000), null);
  assert.equal(provider.fetchedAt.length, 2);
  assert.equal(clock.pending().length, 0);
});

test('forced refreshes are rate-limited: rejections within the minimum interval share the last fetch', async () => {
  const { clock, provider, cache } = setup({ rotates: false });
  const lease = await cache.get(LOGIN);
  await clock.advanceAsync(1000);
  await Promise.all([cache.rejected(LOGIN, lease, 0), cache.rejected(LOGIN, lease, 0), cache.rejected(LOGIN, lease, 0)]);
  await clock.advanceAsync(200);
  await cache.rejected(LOGIN, lease, 0);
  assert.equal(provider.fetchedAt.length, 2, 'one forced fetch for all four rejections');
});

test('a watched source that changes refreshes every login at once', async () => {
  const { clock, provider, cache, events } = setup();
  await cache.get(LOGIN);
  await cache.get({ ...LOGIN, user: 'other' });
  provider.source = { password: 'two' };
  provider.changed();
  await clock.advanceAsync(0);
  assert.equal(provider.fetchedAt.length, 4);
  assert.equal((await cache.get(LOGIN)).password, 'two');
  const rotated = events.filter((event) => event.type === 'credential-refreshed' && event.reason === 'source-changed' && event.changed);
  assert.equal(rotated.length, 2);
});

test('an entry nobody used for an hour stops refreshing and is dropped; the next login fetches', async () => {
  const { clock, provider, cache, expiring } = setup();
  provider.source = () => expiring('t', 20 * 60_000);
  await cache.get(LOGIN);
  await clock.advanceAsync(3 * 3_600_000);
  const fetches = provider.fetchedAt.length;
  // The first fetch, then every 16 minutes while the hour lasts (16, 32, 48), then none.
  assert.equal(fetches, 4, `refreshing stopped after an idle hour (${fetches} fetches)`);
  assert.equal(clock.pending().length, 0);
  assert.deepEqual(await cache.refreshAll('reload'), { refreshed: 0, failed: 0 }, 'a reload skips (and drops) it');
  assert.equal(cache.snapshot().length, 0);
  await cache.get(LOGIN);
  assert.equal(provider.fetchedAt.length, fetches + 1);
});

test('the snapshot names logins and expiry, never the secret', async () => {
  const { cache, provider, expiring } = setup();
  provider.source = expiring('very-secret-token', 60_000);
  await cache.get(LOGIN);
  const snapshot = cache.snapshot();
  assert.equal(snapshot[0]!.login, 'app@db1:5432');
  assert.ok(snapshot[0]!.expiresAt instanceof Date);
  assert.ok(!JSON.stringify(snapshot).includes('very-secret-token'));
  cache.close();
});
