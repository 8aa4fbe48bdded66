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

test('answers match their entries across many exchanges, short and long, and a failed Parse still says so', () => {
  const plan = new ResponsePlan();
  const failed: number[] = [];
  // Read anew each time (an assertion on one reading would narrow the next one's type).
  const next = (): string | undefined => plan.current?.kind;
  for (let round = 0; round < 3; round++) {
    // A long pipeline, answered while more is added behind it.
    for (let i = 0; i < 100; i++) {
      plan.add({ kind: 'bind' });
      plan.add({ kind: 'execute' });
    }
    plan.add({ kind: 'sync' });
    for (let i = 0; i < 100; i++) {
      assert.equal(next(), 'bind', `round ${round}, pair ${i}`);
      plan.complete(T('2'));
      assert.equal(next(), 'execute');
      plan.complete(T('C'));
      if (i === 50) plan.add({ kind: 'query' });
    }
    plan.complete(T('Z'));
    assert.equal(next(), 'query', 'the Query added half-way is next');
    plan.complete(T('Z'));
    assert.equal(plan.empty, true);
    // Then short exchanges, each answered before the next.
    for (let i = 0; i < 5; i++) {
      plan.add({ kind: 'parse', onError: () => failed.push(round * 10 + i) });
      plan.addSynthesized();
      plan.add({ kind: 'sync' });
      assert.equal(next(), 'parse');
      plan.fail();
      assert.equal(next(), 'sync', 'the error skips to the Sync');
      assert.equal(plan.synthesizedPending, false);
      plan.complete(T('Z'));
      assert.equal(plan.empty, true);
      assert.equal(plan.current, undefined);
    }
  }
  assert.deepEqual(failed, [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24]);
});

test('a Parse skipped after an error made nothing: the ReadyForQuery that ends its exchange says so; parsing() sees the unanswered ones', () => {
  const plan = new ResponsePlan();
  const unmade: string[] = [];
  const parse = (name: string) => ({ kind: 'parse' as const, name, onError: () => unmade.push(name) });
  // Bind fails; the Parse behind it in the same exchange is skipped; the next exchange's is answered.
  plan.add({ kind: 'bind' });
  plan.add({ kind: 'execute' });
  plan.add(parse('b'));
  plan.add({ kind: 'sync' });
  plan.add(parse('c'));
  plan.add({ kind: 'sync' });
  assert.deepEqual([plan.parsing('b'), plan.parsing('c'), plan.parsing('d')], [true, true, false]);
  plan.fail(); // the Bind's error: the server skips to the Sync, and the Parse with it
  assert.deepEqual(unmade, ['b']);
  plan.complete(T('Z'));
  assert.equal(plan.parsing('b'), false);
  plan.complete(T('1'));
  assert.equal(plan.parsing('c'), false, 'answered');
  plan.complete(T('Z'));
  assert.deepEqual(unmade, ['b']);
  // An error that skips a whole exchange's Parse behind a Flush-ended part: only its ReadyForQuery tells.
  plan.add(parse('e'));
  plan.add({ kind: 'sync' });
  plan.complete(T('Z'));
  assert.deepEqual(unmade, ['b', 'e'], 'unanswered at ReadyForQuery: skipped');
  assert.equal(plan.empty, true);
});

test('parsing() sees a Parse added once every entry before it was answered (the plan starts again at slot 0)', () => {
  const plan = new ResponsePlan();
  plan.add({ kind: 'query' });
  plan.complete(T('Z'));
  plan.add({ kind: 'parse', name: 'a' });
  plan.add({ kind: 'sync' });
  assert.equal(plan.parsing('a'), true);
  plan.complete(T('1'));
  assert.equal(plan.parsing('a'), false);
});

test('a DEALLOCATE ALL that did not run is undone: refused, skipped, passed over by ReadyForQuery, or its server lost; after the Parses behind it, before those in front', () => {
  const plan = new ResponsePlan();
  const events: string[] = [];
  const drop = (name: string) => ({ ran: false, undo: () => events.push(`undo ${name}`) });
  const parse = (name: string) => ({ kind: 'parse' as const, name, onError: () => events.push(`unmade ${name}`) });
  // Refused at its Execute, with Parses before and behind it.
  plan.add(parse('a'));
  plan.addDrop({ kind: 'execute', drop: drop('x') });
  plan.add(parse('b'));
  plan.add({ kind: 'sync' });
  assert.equal(plan.dropping, true);
  plan.complete(T('1'));
  assert.equal(plan.currentDrop?.ran, false, 'the drop is at the head');
  assert.deepEqual(plan.parsesBehindHead(), ['b']);
  plan.fail();
  assert.deepEqual(events.splice(0), ['unmade b', 'undo x']);
  assert.equal(plan.dropping, false);
  plan.complete(T('Z'));
  // Skipped after an error before it: last first.
  plan.add(parse('c'));
  plan.addDrop({ kind: 'execute', drop: drop('y') });
  plan.add(parse('d'));
  plan.add({ kind: 'sync' });
  plan.fail();
  assert.deepEqual(events.splice(0), ['unmade d', 'undo y', 'unmade c']);
  plan.complete(T('Z'));
  // A Query: only its ReadyForQuery tells, and only when no CommandComplete said it ran.
  const ran = drop('ran');
  plan.addDrop({ kind: 'query', drop: drop('z') });
  plan.addDrop({ kind: 'query', drop: ran });
  plan.fail(); // an error inside the first Query: the Query goes on
  assert.equal(plan.currentDrop?.ran, false);
  plan.complete(T('Z'));
  assert.deepEqual(events.splice(0), ['undo z']);
  assert.equal(plan.dropping, true);
  plan.currentDrop!.ran = true;
  plan.complete(T('C'));
  plan.complete(T('Z'));
  assert.deepEqual(events, [], 'it ran');
  assert.equal(plan.dropping, false);
  // An Execute that ran is answered by its CommandComplete.
  const executed = drop('executed');
  plan.addDrop({ kind: 'execute', drop: executed });
  plan.add({ kind: 'sync' });
  executed.ran = true;
  plan.complete(T('C'));
  assert.equal(plan.dropping, false);
  plan.complete(T('Z'));
  assert.deepEqual(events, []);
  // The server lost: whatever was not answered.
  plan.add(parse('e'));
  plan.addDrop({ kind: 'execute', drop: drop('w') });
  plan.add({ kind: 'sync' });
  plan.abandon();
  assert.deepEqual(events.splice(0), ['undo w', 'unmade e']);
  assert.equal(plan.dropping, false);
  assert.equal(plan.empty, true);
});
