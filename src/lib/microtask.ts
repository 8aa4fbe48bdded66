// Work deferred to the end of the current task, on the hot path.
//
// queueMicrotask wraps every callback in an AsyncResource (Node keeps async context for it),
// which costs about three times what a reaction on a settled promise costs; nothing here needs
// async context. A callback that throws surfaces as an unhandled rejection, which ends the
// process as an uncaught exception would.

const SETTLED = Promise.resolve();

/** Runs `fn` once the current task and the microtasks queued before it have run. */
export function deferToMicrotask(fn: () => void): void {
  void SETTLED.then(fn);
}
