// Which `node` runs the ambassadors that tests start as child processes. By default the one
// running the tests; with PG_AMBASSADOR_IMAGE_NODE set (.ci/run sets it from
// scripts/image-node.ts), the image's own Node version, so that what a child process measures
// (RSS, signals, exit codes) holds for the runtime users get, while the tests themselves run on
// the CI's Node.

import path from 'node:path';

export const IMAGE_NODE_ENV = 'PG_AMBASSADOR_IMAGE_NODE';

/** The `node` binary for child ambassadors. */
export function ambassadorNode(): string {
  return process.env[IMAGE_NODE_ENV] || process.execPath;
}

/** PATH for a child that finds `node` by name (the image's ENTRYPOINT, `#!/usr/bin/env node`): ambassadorNode()'s directory first. */
export function ambassadorPath(): string {
  const inherited = process.env.PATH ?? '/usr/bin:/bin';
  const image = process.env[IMAGE_NODE_ENV];
  return image ? `${path.dirname(image)}${path.delimiter}${inherited}` : inherited;
}
