/**
 * Worker thread of runOnWorkers (sketch/parallel.ts): runs the sketch jobs it is sent, in order,
 * keeping the model it reads open until a job of another model arrives.
 */
import { workerData } from 'node:worker_threads';
import { serializeError } from '../io/errors.js';
import { postReply, type PoolChannel } from '../threads/sync-pool.js';
import { SourceRoleReader } from '../arch/reader.js';
import { resultBuffers, runSketchJob, type PostedJob, type SketchWorkerReply } from '../sketch/parallel.js';

const channel = workerData as PoolChannel;
let open: { path: string; reader: SourceRoleReader } | null = null;

function reply(message: SketchWorkerReply): void {
  postReply(channel, message, message.ok ? resultBuffers(message.result) : []);
}

channel.port.on('message', (posted: PostedJob) => {
  try {
    if (open?.path !== posted.path) {
      open?.reader.close();
      open = null;
      open = { path: posted.path, reader: SourceRoleReader.open(posted.path) };
    }
    reply({ ok: true, model: posted.model, index: posted.index, result: runSketchJob(open.reader, posted.job, posted.sketchSize) });
  } catch (err) {
    reply({ ok: false, model: posted.model, index: posted.index, error: serializeError(err) });
  }
});
