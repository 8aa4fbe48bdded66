// The ambassador's version, from package.json (SHOW VERSION, build_info, the startup log line).

import { createRequire } from 'node:module';

export const VERSION = (createRequire(import.meta.url)('../package.json') as { version: string }).version;
