// Preloaded (`node --expose-gc --import`) into a spawned ambassador by tests that read its RSS:
// SIGUSR2 runs two full collections (the second frees what the first's finalizers let go) and
// then prints COLLECTED_MARKER, so a sample taken after the marker does not depend on when V8
// last chose to collect. Test-only: the production build itself has no such hook.
// Plain JavaScript because the child runs the build without tsx; ambassador.ts waits for the same
// line (it cannot import this file: that would install the handler in the test process too).

const COLLECTED_MARKER = '{"test":"collected"}';

process.on('SIGUSR2', () => {
  globalThis.gc();
  globalThis.gc();
  process.stdout.write(`${COLLECTED_MARKER}\n`);
});
