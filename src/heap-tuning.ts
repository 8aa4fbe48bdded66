// V8's young generation kept at its first size (1 MiB per semi-space) for the process's life.
// Imported first by main.ts, so it applies before the modules and the config load.
//
// Why: V8 doubles the young generation whenever a collection finds it busy, up to 16 MiB per
// semi-space, and an idle process keeps the pages. Loading the modules and validating the config
// grow it to 8 MiB at start: 8-10 MB of RSS the ambassador then holds for good. A proxy's own garbage is
// short-lived and small (frames are forwarded as slices, requests reuse their objects), so a
// small young generation costs a few more scavenges, each of little; the chunks read from
// sockets live outside it, and GarbageBound collects those by bytes forwarded. Measured: an idle
// ambassador 71 -> 66 MB on Node 20 and 90 -> 85 MB on Node 22.
//
// Only --semi-space-growth-factor takes effect after V8 has started (the semi-space sizes are
// read once); a user who sets any young-generation flag (node's arguments or NODE_OPTIONS) keeps
// V8's behaviour with that flag.

import v8 from 'node:v8';

const YOUNG_GENERATION_FLAG = /^--(?:max-semi-space-size|min-semi-space-size|semi-space-growth-factor|max-young-generation-size)\b/;

/** Whether the process was started with a young-generation flag of its own. */
export function youngGenerationChosen(execArgv: readonly string[], nodeOptions: string | undefined): boolean {
  return [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((arg) => YOUNG_GENERATION_FLAG.test(arg.replaceAll('_', '-')));
}

if (!youngGenerationChosen(process.execArgv, process.env.NODE_OPTIONS)) v8.setFlagsFromString('--semi-space-growth-factor=1');
