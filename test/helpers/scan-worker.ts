/** Worker thread of scanMoments: opens the model itself and scans the units it is handed. */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { openSafetensorsSource, type SafetensorsSource } from '../../src/io/source.js';
import { errorReply, scanUnit, type ScanWorkerData, type WorkerReply, type WorkerRequest } from './scan-model.js';

// The test runner also runs every file under test/ as a script: only in a worker is there work.
if (parentPort) serve(parentPort, workerData as ScanWorkerData);

function serve(port: MessagePort, data: ScanWorkerData): void {
  const reply = (message: WorkerReply) => port.postMessage(message);

  let source: SafetensorsSource | null = null;
  try {
    source = openSafetensorsSource(data.path, { bufferBytes: data.bufferBytes });
    const opened = source;
    port.on('message', (request: WorkerRequest) => {
      try {
        if (request.type === 'stop') {
          reply({ type: 'done', bytesRead: opened.bytesRead });
          opened.close();
          port.close();
          return;
        }
        reply({ type: 'result', id: request.unit.id, sums: scanUnit(opened, request.unit) });
      } catch (err) {
        opened.close();
        reply(errorReply(err));
      }
    });
    reply({ type: 'ready' });
  } catch (err) {
    source?.close();
    reply(errorReply(err));
  }
}
