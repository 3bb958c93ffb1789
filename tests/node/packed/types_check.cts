// Type-checked (tsc --strict --noEmit, module nodenext) against the installed
// package's .d.ts: the CommonJS view of the public API.
import satlab = require('satlab-client');
import { Client, tensor, values } from 'satlab-client';
type ComputeGradientsResponse = satlab.ComputeGradientsResponse;
type TrainResponse = satlab.TrainResponse;

async function main(address: string): Promise<number> {
  const c: Client = new Client(address, { deadlineMs: 1000 });
  const { network } = await c.createNetwork({ network: { spec: { input_size: 1, layers: [{ units: 1, activation: 'ACTIVATION_SIGMOID' }], loss: 'LOSS_MSE' } } });
  const g: ComputeGradientsResponse = await c.computeGradients({ name: network.name, batch: { inputs: tensor([1], [1, 1]), targets: tensor([0], [1, 1]) } });
  const stream = c.train();
  stream.write({ name: network.name, report_every: 1 });
  stream.on('data', (r: TrainResponse) => console.log(r.batches_applied, r.result.loss));
  for await (const ev of c.watchMetrics({ name: network.name, start_step: -1 })) {
    console.log(ev.event.sequence);
  }
  // Several minibatches per message (issue 15 item 4).
  const mb = { inputs: tensor([1], [1, 1]), targets: tensor([0], [1, 1]) };
  for await (const r of c.trainBatches(network.name, [mb, mb, mb], { batchesPerMessage: 2, reportLosses: true })) {
    console.log(r.batches_applied, r.losses.length);
  }
  const packed = await c.trainStep({ name: network.name, batches: [mb, mb], request_id: 'r1' });
  console.log(packed.steps_applied, packed.losses[0], packed.result.step);
  // @ts-expect-error batchesPerMessage is a number
  c.trainBatches(network.name, [mb], { batchesPerMessage: 'many' });
  // Resumable training (survives restarts and a proxy's replica dying).
  for await (const r of c.trainResumable(network.name, [mb, mb], { commitEverySteps: 1, maxResumes: 3 })) {
    console.log(r.result.durable_step);
  }
  // @ts-expect-error maxResumes is a number
  c.trainResumable(network.name, [mb], { maxResumes: 'often' });
  // The types are not `any`: these must not compile.
  // @ts-expect-error network_id is a string
  await c.createNetwork({ network_id: 5 });
  // @ts-expect-error no such RPC
  await c.trainSteps({});
  // @ts-expect-error loss is an enum name
  await c.computeGradients({ name: 'x', counterfactual_losses: ['bce'] });
  const s: string = await c.health();
  console.log(s, satlab.SERVICE_NAME);
  return values(g.gradients.layers[0].weights)[0];
}
void main;
