/**
 * The model worker thread of llmts serve (started by ModelHost with the WorkerConfig as
 * workerData): loads the models, then runs the Engine's decode loop, talking to the HTTP thread
 * by messages (protocol.ts).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from './engine.js';
import type { FromWorker, ToWorker, WorkerConfig } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('src/serve/worker.ts runs as a worker thread (llmts serve starts it)');
const engine = new Engine(workerData as WorkerConfig, (m: FromWorker) => port.postMessage(m));
port.on('message', (m: ToWorker) => engine.handle(m));
if (await engine.load()) await engine.run();
