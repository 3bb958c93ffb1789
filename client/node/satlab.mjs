// ES module entry of satlab-client: `import { Client, tensor } from 'satlab-client'`.
// The implementation is the CommonJS satlab.js; this re-exports its names
// (one module instance, so the loaded protos are shared with require()).
import satlab from './satlab.js';

export const {
  Client, tensor, values, rows, serviceDefinition, root, SERVICE_NAME, PROTO_ROOT, grpc, protobuf,
  tlsCredentials,
} = satlab;
export default satlab;
