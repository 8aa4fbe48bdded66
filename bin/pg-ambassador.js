#!/usr/bin/env node
// Installed entry point: runs the compiled CLI (npm run build produces dist/). The young
// generation is sized first (dist/heap-tuning.js), before the CLI's modules are even parsed.
import '../dist/heap-tuning.js';
await import('../dist/main.js');
