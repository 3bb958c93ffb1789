const s = require('../satlab.js');
const pl = require('@grpc/proto-loader');
const grpc = require('@grpc/grpc-js');
const pd = pl.loadSync('satlab/v1/training_service.proto', {includeDirs:[s.PROTO_ROOT], keepCase:true, longs:Number, enums:String, defaults:true});
const plDef = grpc.loadPackageDefinition(pd).satlab.v1.TrainingService.service.Train;
const fast = s.serviceDefinition().train;
const x = new Float32Array(1000*784).map(()=>Math.random());
const y = new Float32Array(1000*10);
const obj = {name:'networks/a', batch:{inputs:s.tensor(x,[1000,784]), targets:s.tensor(y,[1000,10])}};
const objArr = {name:'networks/a', batch:{inputs:{shape:[1000,784], float_values:Array.from(x)}, targets:{shape:[1000,10], float_values:Array.from(y)}}};
function time(f, n){ f(); const t0=process.hrtime.bigint(); let b; for(let i=0;i<n;i++) b=f(); return [Number(process.hrtime.bigint()-t0)/1e9/n, b]; }
const [tf, bf] = time(()=>fast.requestSerialize(obj), 20);
const [tp, bp] = time(()=>plDef.requestSerialize(objArr), 5);
console.log('encode fast', (bf.length/tf/1e6).toFixed(0), 'MB/s; proto-loader', (bp.length/tp/1e6).toFixed(0), 'MB/s; ratio', (tp/tf).toFixed(1), 'same bytes', Buffer.compare(bf,bp)===0);
const [df] = time(()=>fast.requestDeserialize(bf), 20);
const [dp] = time(()=>plDef.requestDeserialize(bp), 5);
console.log('decode fast', (bf.length/df/1e6).toFixed(0), 'MB/s; proto-loader', (bp.length/dp/1e6).toFixed(0), 'MB/s; ratio', (dp/df).toFixed(1));
