#!/usr/bin/env node
'use strict';
// Lists and describes a satlab server's services through gRPC server
// reflection (grpc.reflection.v1alpha), with no local copy of satlab's .proto
// files: the descriptors come from the server and are turned into protobufjs
// types, which then make a ListNetworks call.
//
// Usage: node examples/reflection.js [--server HOST:PORT] [--service NAME]

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const descriptor = require('protobufjs/ext/descriptor');

// The reflection protocol's own .proto, as shipped by @grpc/reflection.
const REFLECTION_PROTO = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')),
  'build', 'proto', 'grpc', 'reflection', 'v1alpha', 'reflection.proto');

function parseArgs(argv) {
  const args = { server: process.env.SATLAB_SERVER || '127.0.0.1:50051', service: 'satlab.v1.TrainingService' };
  for (let i = 0; i < argv.length; i++) {
    const m = argv[i].match(/^--([^=]+)(?:=(.*))?$/);
    if (!m || !(m[1] in args)) throw new Error(`unknown argument ${argv[i]}`);
    args[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
  }
  return args;
}

class Reflector {
  constructor(target) {
    const def = protoLoader.loadSync(REFLECTION_PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
    const { ServerReflection } = grpc.loadPackageDefinition(def).grpc.reflection.v1alpha;
    this.stub = new ServerReflection(target, grpc.credentials.createInsecure());
    this.files = new Map(); // name -> FileDescriptorProto (decoded)
  }

  ask(request) {
    return new Promise((resolve, reject) => {
      const call = this.stub.ServerReflectionInfo({ deadline: Date.now() + 10000 });
      call.on('data', (res) => {
        if (res.error_response) reject(new Error(`reflection: ${res.error_response.error_message}`));
        else resolve(res);
        call.end();
      });
      call.on('error', reject);
      call.write(request);
    });
  }

  async listServices() {
    const res = await this.ask({ list_services: '' });
    return res.list_services_response.service.map((s) => s.name);
  }

  addFiles(res) {
    const added = [];
    for (const raw of res.file_descriptor_response.file_descriptor_proto) {
      const fd = descriptor.FileDescriptorProto.decode(raw);
      if (!this.files.has(fd.name)) this.files.set(fd.name, fd);
      added.push(fd.name);
    }
    return added;
  }

  // Fetches the file defining `symbol` and, transitively, every dependency.
  async root(symbol) {
    this.addFiles(await this.ask({ file_containing_symbol: symbol }));
    for (let missing = this.missing(); missing.length; missing = this.missing()) {
      for (const name of missing) this.addFiles(await this.ask({ file_by_filename: name }));
    }
    return protobuf.Root.fromDescriptor({ file: [...this.files.values()] }).resolveAll();
  }

  missing() {
    const out = [];
    for (const fd of this.files.values()) for (const dep of fd.dependency || []) if (!this.files.has(dep)) out.push(dep);
    return [...new Set(out)];
  }

  close() { this.stub.close(); }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const r = new Reflector(args.server);
  try {
    const services = await r.listServices();
    console.log('services:');
    for (const s of services) console.log(`  ${s}`);
    if (!services.includes(args.service)) throw new Error(`${args.service} not listed`);

    const root = await r.root(args.service);
    const service = root.lookupService(args.service);
    console.log(`service ${args.service}`);
    for (const m of service.methodsArray) {
      const req = m.resolvedRequestType.fullName.replace(/^\./, '');
      const res = m.resolvedResponseType.fullName.replace(/^\./, '');
      console.log(`  rpc ${m.name}(${m.requestStream ? 'stream ' : ''}${req}) returns (${m.responseStream ? 'stream ' : ''}${res})`);
    }

    // A call whose messages are built only from the reflected descriptors.
    const method = service.methods.ListNetworks;
    const Req = method.resolvedRequestType;
    const Res = method.resolvedResponseType;
    const client = new grpc.Client(args.server, grpc.credentials.createInsecure());
    const reply = await new Promise((resolve, reject) => {
      client.makeUnaryRequest(`/${args.service}/ListNetworks`,
        (o) => Buffer.from(Req.encode(Req.fromObject(o)).finish()),
        (b) => Res.toObject(Res.decode(b), { longs: Number, defaults: true }),
        { page_size: 10 }, new grpc.Metadata(), { deadline: Date.now() + 10000 },
        (err, res) => (err ? reject(err) : resolve(res)));
    });
    client.close();
    const names = reply.networks.map((n) => n.name);
    console.log(`ListNetworks via reflected descriptors: ${names.length} network(s) ${JSON.stringify(names)}`);
  } finally {
    r.close();
  }
}

if (require.main === module) {
  main().catch((e) => { console.error(`reflection: ${e.message}`); process.exit(1); });
}
module.exports = { main, Reflector };
