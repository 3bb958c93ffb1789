// ES module consumer of the installed satlab-client (copied into the temp app
// by run_packed.js). Usage: node esm_check.mjs HOST:PORT
import satlab, { Client, tensor, values } from 'satlab-client';

const c = new Client(process.argv[2], { deadlineMs: 20000 });
await c.waitReady(10000);
const id = `esm-${process.pid}`;
const { network } = await c.createNetwork({ network_id: id, network: { spec: {
  input_size: 1, layers: [{ units: 1, activation: 'ACTIVATION_SIGMOID' }], loss: 'LOSS_MSE',
  dtype: 'DTYPE_FLOAT64',
  init: { scheme: 'INIT_SCHEME_EXPLICIT', parameters: [{ weights: tensor([2], [1, 1], 'float64'), biases: tensor([2], [1], 'float64') }] },
} } });
try {
  const g = await c.computeGradients({ name: network.name, counterfactual_losses: ['LOSS_BCE'],
    batch: { inputs: tensor([1], [1, 1], 'float64'), targets: tensor([0], [1, 1], 'float64') } });
  console.log(`dC/dw mse ${values(g.gradients.layers[0].weights)[0]} bce ${values(g.counterfactuals[0].layers[0].weights)[0]}`);
} finally {
  await c.deleteNetwork({ name: network.name });
  c.close();
}
if (satlab.Client !== Client) throw new Error('default export is not the module object');
console.log('default export ok');
