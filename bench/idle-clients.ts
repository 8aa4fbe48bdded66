// Child process of the memory bench: holds `count` idle client connections open against one
// endpoint. Run by memory.ts with an IPC channel (fork) and its settings in the environment
// (BENCH_IDLE_CLIENTS, JSON: the password stays out of argv). Conversation:
//
//   child  -> {type: 'loaded'}                 ready to start
//   parent -> {type: 'go'}                     log the clients in, `concurrency` at a time
//   child  -> {type: 'connected', connected, failed, errors, elapsedMs}
//   parent -> {type: 'status'}                 child -> {type: 'status', open}
//   parent -> {type: 'close'}                  child -> {type: 'closed', open}, then it exits
//
// It exits when the parent goes away, so no client process outlives the bench.

import {
  connectIdle, IDLE_CLIENTS_ENV, type ChildMessage, type IdleClientsSettings, type IdleConnection, type ParentMessage,
} from './idle-connection.ts';

const MAX_ERRORS_KEPT = 5;

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function logInAll(settings: IdleClientsSettings, connections: IdleConnection[]): Promise<void> {
  const started = performance.now();
  const errors: string[] = [];
  let failed = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < settings.count) {
      next++;
      try {
        connections.push(await connectIdle(settings.endpoint, settings.loginTimeoutMs));
      } catch (error) {
        failed++;
        if (errors.length < MAX_ERRORS_KEPT) errors.push((error as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(settings.concurrency, settings.count) }, worker));
  send({ type: 'connected', connected: connections.length, failed, errors, elapsedMs: performance.now() - started });
}

function main(): void {
  const text = process.env[IDLE_CLIENTS_ENV];
  if (!text || !process.send) throw new Error(`run by memory.ts (fork with ${IDLE_CLIENTS_ENV} set), not directly`);
  const settings = JSON.parse(text) as IdleClientsSettings;
  const connections: IdleConnection[] = [];
  const open = (): number => connections.filter((connection) => connection.isOpen()).length;
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'go') void logInAll(settings, connections);
    else if (message.type === 'status') send({ type: 'status', open: open() });
    else if (message.type === 'close') {
      const stillOpen = open();
      for (const connection of connections) connection.close();
      send({ type: 'closed', open: stillOpen });
      setTimeout(() => process.exit(0), 200);
    }
  });
  send({ type: 'loaded' });
}

main();
