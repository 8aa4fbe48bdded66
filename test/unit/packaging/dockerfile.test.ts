// The Dockerfile and .dockerignore, checked without a Docker engine: the Docker language server's
// validator (dockerfile-utils), hadolint's rules (test/support/dockerfile-lint.ts), and the facts
// the ambassador depends on: exposed ports are the config defaults, the health check asks the
// admin server's /livez, signals reach Node through tini, the build context holds what COPY needs.
// test/integration/packaging.test.ts runs the image's runtime stage for real.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { validate } from 'dockerfile-utils';
import { DEFAULTS, ENVIRONMENT_VARIABLES } from '../../../src/config/index.ts';
import { dockerignoreMatcher, envOf, execForm, imageNodeOptions, imageNodeVersion, instructionsOf, parseDockerfile, readDockerfile } from '../../support/dockerfile.ts';
import { lintDockerfile } from '../../support/dockerfile-lint.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const dockerfile = readDockerfile(path.join(ROOT, 'Dockerfile'));
const runtime = dockerfile.stages.at(-1)!;
const workdir = instructionsOf(runtime, 'WORKDIR').at(-1)!.args[0]!;

test('the Docker language server finds nothing wrong', () => {
  assert.deepEqual(validate(dockerfile.text).map((d) => `${d.range.start.line + 1}: ${d.message}`), []);
  assert.ok(validate('FROM node:20\nEXPOSE 99999\nHEALTHCHECK --interval=1x CMD true\n').length > 0, 'the validator does report problems');
});

test("hadolint's rules: pinned tags, non-root user, JSON forms, apt hygiene, HEALTHCHECK", () => {
  assert.deepEqual(lintDockerfile(dockerfile), []);
});

test('the lint rules catch what they are for', () => {
  const bad = parseDockerfile(
    [
      'FROM node AS build',
      'WORKDIR app',
      'ADD src ./src',
      'RUN cd src && npm install && sudo apt-get install curl',
      'RUN curl -s https://example.com | sh',
      'FROM debian:latest',
      'COPY --from=bild /app ./app',
      'USER root',
      'ENTRYPOINT node main.js',
      '',
    ].join('\n'),
  );
  const rules = new Set(lintDockerfile(bad).map((finding) => finding.rule));
  for (const rule of ['DL3006', 'DL3007', 'DL3000', 'DL3020', 'DL3003', 'DL3016', 'DL3004', 'DL3008', 'DL3015', 'DL3014', 'DL3009', 'DL4006', 'DL3022', 'DL3045', 'DL3002', 'DL3025', 'HEALTHCHECK']) {
    assert.ok(rules.has(rule), `${rule} is reported`);
  }
});

test('multi-stage: dev dependencies in the build stage only, a pinned Node 24 slim base for both', () => {
  assert.equal(dockerfile.stages.length, 2);
  const [build] = dockerfile.stages;
  assert.equal(build!.name, 'build');
  for (const stage of dockerfile.stages) assert.match(stage.image, /^node:24\.\d+\.\d+-bookworm-slim$/);
  const buildRuns = instructionsOf(build!, 'RUN').map((run) => run.args.join(' '));
  assert.ok(buildRuns.some((run) => /npm ci\b/.test(run)));
  assert.ok(buildRuns.some((run) => /npm run build\b/.test(run) && /npm prune --omit=dev/.test(run)));
  const scripts = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  assert.ok(scripts.build, 'package.json has the build script the image runs');
  const fromBuild = instructionsOf(runtime, 'COPY').filter((copy) => copy.flags.from === 'build');
  assert.deepEqual(fromBuild.map((copy) => copy.args[0]).sort(), ['/app/dist', '/app/node_modules']);
  assert.ok(!instructionsOf(runtime, 'RUN').some((run) => run.args.includes('npm')), 'no npm install in the runtime stage');
});

test('ports, listen addresses and the health check match the ambassador', () => {
  const exposed = instructionsOf(runtime, 'EXPOSE').flatMap((expose) => expose.args.map(Number));
  assert.deepEqual(exposed, [DEFAULTS.listen.port, DEFAULTS.admin.port]);
  const env = envOf(runtime);
  assert.equal(env.LISTEN_HOST, '0.0.0.0');
  assert.equal(env.ADMIN_HOST, '0.0.0.0');
  for (const name of Object.keys(env)) assert.ok(name === 'NODE_ENV' || ENVIRONMENT_VARIABLES.includes(name), `${name} is read by the config loader`);
  const healthcheck = execForm(instructionsOf(runtime, 'HEALTHCHECK')[0]!);
  assert.deepEqual(healthcheck, ['node', `${workdir}/bin/pg-ambassador.js`, 'probe', 'livez']);
  assert.deepEqual(execForm(instructionsOf(runtime, 'ENTRYPOINT')[0]!), ['/usr/bin/tini', '--', 'node', '--max-semi-space-size=16', `${workdir}/bin/pg-ambassador.js`]);
  assert.deepEqual(imageNodeOptions(dockerfile), ['--max-semi-space-size=16'], 'what tests and the bench start the ambassador with');
  assert.deepEqual(imageNodeOptions(parseDockerfile('FROM node:24\nENTRYPOINT ["/usr/local/bin/node", "--jitless", "--stack-size=900", "main.js", "serve"]\n')), ['--jitless', '--stack-size=900']);
  assert.throws(() => imageNodeOptions(parseDockerfile('FROM node:24\nENTRYPOINT node main.js\n')), /exec form/);
  assert.match(imageNodeVersion(dockerfile), /^24\.\d+\.\d+$/, 'the Node that .ci/run fetches for child ambassadors');
  assert.equal(imageNodeVersion(parseDockerfile('ARG V=22.1.0\nFROM node:${V}-alpine AS build\nFROM node:24.0.1\n')), '24.0.1', 'the last stage, the runtime');
  assert.throws(() => imageNodeVersion(parseDockerfile('FROM node:24-bookworm-slim\n')), /full version/);
  assert.ok(instructionsOf(runtime, 'RUN').some((run) => /apt-get install .*\btini=/.test(run.args.join(' '))), 'tini is installed');
  assert.deepEqual(instructionsOf(runtime, 'STOPSIGNAL')[0]?.args, ['SIGTERM']);
  assert.match(instructionsOf(runtime, 'USER').at(-1)!.args[0]!, /^[1-9]\d*:[1-9]\d*$/, 'a numeric uid, so runAsNonRoot can check it');
});

test('.dockerignore lets in what COPY takes from the context and keeps the rest out', () => {
  const ignored = dockerignoreMatcher(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
  const sources = dockerfile.stages.flatMap((stage) => instructionsOf(stage, 'COPY').filter((copy) => copy.flags.from === undefined).flatMap((copy) => copy.args.slice(0, -1)));
  assert.ok(sources.length >= 5);
  for (const source of sources) {
    assert.ok(existsSync(path.join(ROOT, source)), `${source} exists`);
    assert.equal(ignored(source), false, `${source} is in the build context`);
  }
  for (const kept of ['src/main.ts', 'bin/pg-ambassador.js']) assert.equal(ignored(kept), false, kept);
  for (const out of ['node_modules/pg/package.json', 'dist/main.js', '.git/HEAD', 'test/unit/app/startup.test.ts', 'bench/run.ts', 'config/kubernetes/job.yaml', '.env']) {
    assert.equal(ignored(out), true, `${out} stays out of the context`);
  }
});
