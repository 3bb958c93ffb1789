// TypeScript types of the public API of satlab-client (satlab.js / satlab.mjs).
//
// Messages are plain objects with the proto's snake_case field names
// (proto/satlab/v1/*.proto), enums as their names, int64 as number. On
// input every field is optional (proto3 defaults); on output every scalar
// and repeated field is present (defaults filled), sub-messages may be null.

import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';

export { grpc, protobuf };

/** "satlab.v1.TrainingService" (also the health-check service name). */
export declare const SERVICE_NAME: string;
/** Directory the .proto files are loaded from (the package's own copy, or $SATLAB_PROTO_ROOT). */
export declare const PROTO_ROOT: string;

// ---- enums -----------------------------------------------------------------
export type DType = 'DTYPE_UNSPECIFIED' | 'DTYPE_FLOAT32' | 'DTYPE_FLOAT64';
export type Activation =
  | 'ACTIVATION_UNSPECIFIED' | 'ACTIVATION_IDENTITY' | 'ACTIVATION_SIGMOID' | 'ACTIVATION_TANH'
  | 'ACTIVATION_RELU' | 'ACTIVATION_LEAKY_RELU' | 'ACTIVATION_SOFTPLUS' | 'ACTIVATION_SOFTMAX';
export type Loss = 'LOSS_UNSPECIFIED' | 'LOSS_MSE' | 'LOSS_BCE' | 'LOSS_CCE';
export type InitScheme =
  | 'INIT_SCHEME_UNSPECIFIED' | 'INIT_SCHEME_ZEROS' | 'INIT_SCHEME_UNIFORM_FAN_IN'
  | 'INIT_SCHEME_GLOROT_UNIFORM' | 'INIT_SCHEME_GLOROT_NORMAL' | 'INIT_SCHEME_HE_NORMAL'
  | 'INIT_SCHEME_NORMAL' | 'INIT_SCHEME_EXPLICIT';
export type DatasetKind =
  | 'DATASET_KIND_UNSPECIFIED' | 'DATASET_KIND_SINGLE_SAMPLE' | 'DATASET_KIND_XOR'
  | 'DATASET_KIND_CIRCLES' | 'DATASET_KIND_SPIRALS' | 'DATASET_KIND_GAUSSIAN_BLOBS'
  | 'DATASET_KIND_K_BLOBS';

// ---- tensors ---------------------------------------------------------------
/** A row-major tensor: float32 or float64 values (typed arrays when decoded). */
export interface Tensor {
  shape: number[];
  float_values?: Float32Array | number[];
  double_values?: Float64Array | number[];
}
/** A decoded tensor: typed arrays, one of them empty. */
export interface DecodedTensor {
  shape: number[];
  float_values: Float32Array;
  double_values: Float64Array;
}
export interface Minibatch { inputs?: Tensor; targets?: Tensor }

// ---- networks --------------------------------------------------------------
export interface LayerSpec { units?: number; activation?: Activation; leaky_relu_slope?: number }
export interface LayerParameters { weights?: Tensor; biases?: Tensor }
export interface Initialization {
  scheme?: InitScheme; seed?: number; mean?: number; std?: number; parameters?: LayerParameters[];
}
export interface Sgd { learning_rate?: number; momentum?: number; nesterov?: boolean; weight_decay?: number }
export interface Adam { learning_rate?: number; beta1?: number; beta2?: number; epsilon?: number; weight_decay?: number }
export interface Optimizer { sgd?: Sgd; adam?: Adam }
export interface NetworkSpec {
  input_size?: number;
  layers?: LayerSpec[];
  loss?: Loss;
  init?: Initialization;
  optimizer?: Optimizer;
  dtype?: DType;
  saturation_threshold?: number;
}
export interface Timestamp { seconds: number; nanos: number }
export interface Network {
  name: string;
  spec: NetworkSpec | null;
  create_time: Timestamp | null;
  update_time: Timestamp | null;
  step: number;
  samples_seen: number;
  parameter_count: number;
  /** The last step a restart keeps (equal to step on an in-memory server). */
  durable_step: number;
}
export interface LayerStats {
  layer: number;
  mean_derivative: number;
  saturated_fraction: number;
  dead_units: number;
  weight_gradient_norm: number;
  bias_gradient_norm: number;
  mean_activation: number;
}
export interface SaturationStats { layers: LayerStats[]; output_attenuation: number }
export interface StepResult {
  step: number;
  loss: number;
  batch_size: number;
  saturation: SaturationStats | null;
  diverged: boolean;
  accuracy: number;
  /** The last step a restart keeps, as of this step. */
  durable_step: number;
}

// ---- requests and responses -----------------------------------------------
export interface CreateNetworkRequest { network?: { spec?: NetworkSpec }; network_id?: string }
export interface CreateNetworkResponse { network: Network }
export interface NameRequest { name?: string }
export interface GetNetworkResponse { network: Network }
export interface ListNetworksRequest { page_size?: number; page_token?: string }
export interface ListNetworksResponse { networks: Network[]; next_page_token: string }
export type DeleteNetworkResponse = Record<string, never>;
export interface DecodedLayerParameters { weights: DecodedTensor; biases: DecodedTensor }
export interface GetParametersResponse { layers: DecodedLayerParameters[]; step: number }
export interface SetParametersRequest { name?: string; layers?: LayerParameters[]; reset_optimizer_state?: boolean }
export interface SetParametersResponse { network: Network }
export interface ForwardRequest { name?: string; inputs?: Tensor; include_layers?: boolean }
export interface ForwardResponse {
  outputs: DecodedTensor;
  layers: { z: DecodedTensor; a: DecodedTensor }[];
  step: number;
}
export interface Gradients {
  loss: Loss;
  loss_value: number;
  layers: DecodedLayerParameters[];
  output_delta: DecodedTensor;
  saturation: SaturationStats | null;
}
export interface ComputeGradientsRequest { name?: string; batch?: Minibatch; counterfactual_losses?: Loss[] }
export interface ComputeGradientsResponse { gradients: Gradients; counterfactuals: Gradients[]; step: number }
/**
 * One minibatch (`batch`) or several (`batches`, applied in order, each one
 * step, all or none; at most the server's --max_batches_per_message).
 */
export interface TrainStepRequest { name?: string; batch?: Minibatch; batches?: Minibatch[]; request_id?: string }
/** The last step's result, the steps applied and every step's loss. */
export interface TrainStepResponse { result: StepResult; steps_applied: number; losses: number[] }
/** First message: name and stream options; then one minibatch (`batch`) or several (`batches`) each. */
export interface TrainRequest {
  name?: string; batch?: Minibatch; batches?: Minibatch[]; report_every?: number; report_losses?: boolean;
  commit_every_steps?: number; commit_interval_ms?: number; expected_step?: number;
}
/** `losses`: with report_losses, the loss of each step since the previous response. */
export interface TrainResponse { result: StepResult; batches_applied: number; losses: number[] }
/** trainBatches options. */
export interface TrainBatchesOptions extends CallOptions {
  /** Minibatches per message (default 32; 1 sends each alone). */
  batchesPerMessage?: number;
  reportEvery?: number;
  reportLosses?: boolean;
  commitEverySteps?: number;
  commitIntervalMs?: number;
}
/** trainResumable options. */
export interface TrainResumableOptions extends CallOptions {
  /** Minibatches per message (default 32; 1 sends each alone). */
  batchesPerMessage?: number;
  reportEvery?: number;
  /** Commit every this many steps (0: half of maxBuffered). */
  commitEverySteps?: number;
  /** Failures in a row before the error is thrown (default 10). */
  maxResumes?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Minibatches kept until durable (default 4096, at least 2). */
  maxBuffered?: number;
}
export interface EvaluateRequest { name?: string; data?: Minibatch }
export interface EvaluateResponse {
  loss: number; accuracy: number; samples: number; saturation: SaturationStats | null; step: number;
}
export interface ImportNetworkRequest {
  /** The whole export file. */
  data: Uint8Array;
  /** The new network's id; empty: server-assigned. */
  network_id?: string;
}
export interface ImportNetworkResponse { network: Network }
export interface WatchMetricsRequest { name?: string; start_step?: number }

// ---- experiments -------------------------------------------------------------
export interface BuiltinDataset {
  kind?: DatasetKind; samples?: number; noise?: number; classes?: number; seed?: number; single_output?: boolean;
}
export interface Dataset { builtin?: BuiltinDataset; inline?: Minibatch }
export interface ExperimentVariant {
  label?: string; output_activation?: Activation; loss?: Loss; hidden_activation?: Activation; optimizer?: Optimizer;
}
export interface ExperimentSpec {
  display_name?: string;
  dataset?: Dataset;
  hidden_layers?: LayerSpec[];
  init?: Initialization;
  variants?: ExperimentVariant[];
  epochs?: number;
  batch_size?: number;
  shuffle_seed?: number;
  no_shuffle?: boolean;
  optimizer?: Optimizer;
  dtype?: DType;
  saturation_threshold?: number;
  parallelism?: number;
}
export interface EpochMetrics {
  variant: number; label: string; epoch: number; loss: number; accuracy: number;
  saturation: SaturationStats | null; step: number; diverged: boolean;
}
export interface VariantSummary {
  variant: number; label: string; final_loss: number; final_accuracy: number; initial_loss: number;
  epochs_to_half_loss: number; initial_output_attenuation: number; mean_output_attenuation: number;
  diverged: boolean;
}
export interface ExperimentSummary {
  variants: VariantSummary[]; elapsed_seconds: number; samples: number; input_size: number; output_size: number;
}
export interface RunExperimentRequest {
  spec?: ExperimentSpec;
  /** Optional id (as network ids); a finished one's kept run is streamed again. */
  experiment_id?: string;
}
export interface RunExperimentResponse {
  epoch?: EpochMetrics | null;
  summary?: ExperimentSummary | null;
  /** Which of the oneof is set. */
  kind?: 'epoch' | 'summary';
  epochs_done: number;
  epochs_total: number;
  /** `experiments/{id}` of this run. */
  experiment: string;
}
export interface ExperimentProgress {
  experiment_id: string; display_name: string; epoch: EpochMetrics | null; summary: ExperimentSummary | null;
  epochs_done: number; epochs_total: number;
}
export interface MetricEvent {
  sequence: number;
  time: Timestamp | null;
  network: string;
  step?: StepResult | null;
  experiment?: ExperimentProgress | null;
  network_deleted?: boolean;
  /** Which of the oneof is set. */
  kind?: 'step' | 'experiment' | 'network_deleted';
}
export interface WatchMetricsResponse { event: MetricEvent; dropped_events: number }
export type ExperimentState =
  'EXPERIMENT_STATE_UNSPECIFIED' | 'EXPERIMENT_STATE_RUNNING' | 'EXPERIMENT_STATE_SUCCEEDED' |
  'EXPERIMENT_STATE_FAILED' | 'EXPERIMENT_STATE_CANCELLED' | number;
/** A kept experiment, `experiments/{id}`. */
export interface Experiment {
  name: string; spec: ExperimentSpec | null; state: ExperimentState;
  create_time: Timestamp | null; update_time: Timestamp | null;
  /** Every epoch message the run streamed (empty in ListExperiments). */
  curves: EpochMetrics[]; summary: ExperimentSummary | null; error: string;
  curves_truncated: boolean; epochs_total: number;
}
export interface GetExperimentResponse { experiment: Experiment }
export interface ListExperimentsRequest { page_size?: number; page_token?: string }
export interface ListExperimentsResponse { experiments: Experiment[]; next_page_token: string }
export interface DeleteExperimentResponse {}

// ---- the client ------------------------------------------------------------
export interface CallOptions {
  /** Deadline of this call in milliseconds from now (unary default: the client's deadlineMs). */
  deadlineMs?: number;
}
export interface ClientOptions {
  /** TLS or other channel credentials; plaintext when omitted. */
  credentials?: grpc.ChannelCredentials;
  /** Extra grpc-js channel options (message limits default to 64 MiB). */
  options?: grpc.ChannelOptions;
  /** Default deadline of unary calls in milliseconds (30000). */
  deadlineMs?: number;
  /** Connect with TLS (implied by any tls*File); ignored when `credentials` is given. */
  tls?: boolean;
  /** PEM CA certificates the server's certificate must chain to (default: Node's roots). */
  tlsCaFile?: string;
  /** PEM client certificate for mutual TLS (with tlsKeyFile). */
  tlsCertFile?: string;
  /** PEM private key of tlsCertFile. */
  tlsKeyFile?: string;
  /** Name the server's certificate must carry when it is not the target's host. */
  tlsServerName?: string;
  /** Sent as `authorization: Bearer <apiKey>` on every call (default: $SATLAB_API_KEY). */
  apiKey?: string;
}
export interface TlsFiles {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}
/** grpc-js TLS credentials from PEM files (certFile and keyFile: both or neither). */
export declare function tlsCredentials(files?: TlsFiles): grpc.ChannelCredentials;
/** A failed call: grpc-js's ServiceError (.code is a grpc.status, .details the server's message). */
export type SatlabError = grpc.ServiceError;

/**
 * A connection to one satlab server. Unary RPCs return Promises that reject
 * with a SatlabError; streams return grpc-js call objects (also async-iterable).
 */
export declare class Client {
  constructor(target: string, options?: ClientOptions);
  /** The generic grpc-js client (methods by lowerCamel RPC name). */
  readonly raw: grpc.Client;
  readonly deadlineMs: number;

  createNetwork(req: CreateNetworkRequest, opts?: CallOptions): Promise<CreateNetworkResponse>;
  getNetwork(req: NameRequest, opts?: CallOptions): Promise<GetNetworkResponse>;
  listNetworks(req?: ListNetworksRequest, opts?: CallOptions): Promise<ListNetworksResponse>;
  deleteNetwork(req: NameRequest, opts?: CallOptions): Promise<DeleteNetworkResponse>;
  getParameters(req: NameRequest, opts?: CallOptions): Promise<GetParametersResponse>;
  setParameters(req: SetParametersRequest, opts?: CallOptions): Promise<SetParametersResponse>;
  forward(req: ForwardRequest, opts?: CallOptions): Promise<ForwardResponse>;
  computeGradients(req: ComputeGradientsRequest, opts?: CallOptions): Promise<ComputeGradientsResponse>;
  trainStep(req: TrainStepRequest, opts?: CallOptions): Promise<TrainStepResponse>;
  /** A Train stream: write TrainRequests (name and report_every first), end(), read TrainResponses. */
  train(req?: null, opts?: CallOptions): grpc.ClientDuplexStream<TrainRequest, TrainResponse>;
  evaluate(req: EvaluateRequest, opts?: CallOptions): Promise<EvaluateResponse>;
  /** Metric events (replay, then live); cancel() to stop. */
  watchMetrics(req?: WatchMetricsRequest, opts?: CallOptions): grpc.ClientReadableStream<WatchMetricsResponse>;
  /** Epoch messages, then one summary. */
  runExperiment(req: RunExperimentRequest, opts?: CallOptions): grpc.ClientReadableStream<RunExperimentResponse>;

  /** Resolves when connected; rejects after timeoutMs. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** grpc.health.v1 Check: resolves to 'SERVING', 'NOT_SERVING', ... */
  health(service?: string, opts?: CallOptions): Promise<string>;
  close(): void;

  /** networks/{id}'s export file (docs/storage.md), gathered from its chunks. */
  exportNetwork(req: NameRequest, opts?: CallOptions): Promise<Buffer>;
  /** Creates a network from an export file, sent in 1 MiB chunks; all or nothing. */
  importNetwork(req: ImportNetworkRequest, opts?: CallOptions): Promise<ImportNetworkResponse>;
  // Experiments as resources (`experiments/{id}`).
  getExperiment(req: NameRequest, opts?: CallOptions): Promise<GetExperimentResponse>;
  listExperiments(req?: ListExperimentsRequest, opts?: CallOptions): Promise<ListExperimentsResponse>;
  deleteExperiment(req: NameRequest, opts?: CallOptions): Promise<DeleteExperimentResponse>;

  /**
   * One Train stream over `batches`, up to batchesPerMessage per message;
   * yields a TrainResponse every reportEvery steps and after the last.
   */
  trainBatches(name: string, batches: Iterable<Minibatch> | AsyncIterable<Minibatch>,
    opts?: TrainBatchesOptions): AsyncGenerator<TrainResponse, void, undefined>;
  /**
   * trainBatches that resumes after UNAVAILABLE, INTERNAL "RST_STREAM" (a
   * gRPC proxy whose replica died) or a server restart, resending from the
   * network's durable step: the network ends bitwise as an uninterrupted
   * run; each step's response at most once, in order.
   */
  trainResumable(name: string, batches: Iterable<Minibatch> | AsyncIterable<Minibatch>,
    opts?: TrainResumableOptions): AsyncGenerator<TrainResponse, void, undefined>;
}

/** A Tensor from values and a shape; dtype defaults to float64 for a Float64Array, else float32. */
export declare function tensor(
  values: ArrayLike<number>, shape: number[], dtype?: 'float32' | 'float64'): Tensor;
/** The values of a decoded Tensor (whichever precision it carries). */
export declare function values(t: Tensor | DecodedTensor | null | undefined): Float32Array | Float64Array;
/** A Tensor as an array of rows (a flat array for rank 1). */
export declare function rows(t: Tensor | DecodedTensor): number[][] | number[];
/** The loaded protobufjs root of satlab.v1 (with the fast Tensor codec). */
export declare function root(): protobuf.Root;
/** A grpc-js service definition of satlab.v1.TrainingService using the fast codec. */
export declare function serviceDefinition(r?: protobuf.Root): grpc.ServiceDefinition;
