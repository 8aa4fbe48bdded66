// ResponsePlan: which request each server message answers, and where the ParseCompletes the
// ambassador makes itself go. synthesizedPending is asked after every server message, and answers
// from a count while no synthesized entry is due; the count must never hide one.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ResponsePlan } from '../../../src/frontend/response-plan.ts';

const T = (c: string): number => c.charCodeAt(0);

test('a synthesized ParseComplete is pending at its place in the answers, and taken once', () => {
  const plan = new ResponsePlan();
  assert.equal(plan.synthesizedPending, false, 'an empty plan');
  plan.addSynthesized();
  plan.add({ kind: 'bind' });
  plan.add({ kind: 'execute' });
  plan.addSynthesized();
  plan.addSynthesized();
  plan.add({ kind: 'sync' });
  assert.equal(plan.synthesizedPending, true, 'first in line');
  assert.equal(plan.takeSynthesized(), 1);
  assert.equal(plan.synthesizedPending, false, 'a BindComplete is due first');
  plan.complete(T('2'));
  assert.equal(plan.synthesizedPending, false, 'then a CommandComplete');
  plan.complete(T('C'));
  assert.equal(plan.synthesizedPending, true);
  assert.equal(plan.takeSynthesized(), 2, 'both at once');
  assert.equal(plan.takeSynthesized(), 0);
  plan.complete(T('Z'));
  assert.equal(plan.empty, true);
});

test('synthesized entries skipped by an error or a ReadyForQuery leave none pending, and later ones still count', () => {
  const plan = new ResponsePlan();
  plan.add({ kind: 'bind' });
  plan.addSynthesized();
  plan.add({ kind: 'execute' });
  plan.add({ kind: 'sync' });
  plan.fail(); // the Bind failed: the server skips to the Sync
  assert.equal(plan.synthesizedPending, false, 'the skipped one is not due');
  plan.complete(T('Z'));
  assert.equal(plan.empty, true);
  // A ReadyForQuery ends its request, passing over a synthesized entry left in it.
  plan.add({ kind: 'bind' });
  plan.addSynthesized();
  plan.add({ kind: 'sync' });
  plan.complete(T('Z'));
  assert.equal(plan.synthesizedPending, false, 'the one passed over is not due');
  assert.equal(plan.empty, true);
  // More rounds than the plan keeps its answered entries for (past 64 they are dropped, and the
  // count of the skipped ones with them): each round's own is still due in its place.
  for (let round = 0; round < 70; round++) {
    plan.add({ kind: 'query' });
    plan.addSynthesized();
    plan.add({ kind: 'sync' });
    plan.complete(T('Z')); // the Query's ReadyForQuery
    assert.equal(plan.synthesizedPending, true, `round ${round}: due after the Query`);
    assert.equal(plan.takeSynthesized(), 1);
    plan.complete(T('Z'));
  }
  plan.add({ kind: 'query' });
  plan.complete(T('Z'));
  plan.addSynthesized();
  assert.equal(plan.synthesizedPending, true, 'one added after the plan emptied');
  plan.clear();
  assert.equal(plan.synthesizedPending, false, 'cleared');
  plan.addSynthesized();
  assert.equal(plan.takeSynthesized(), 1);
});
