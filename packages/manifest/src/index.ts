export {
  createEncryptStream,
  type DecryptOptions,
  ENVELOPE_MAGIC,
  ENVELOPE_VERSION,
  type EncryptionAlgorithm,
  type EncryptOptions,
  isEnvelope,
  SEGMENT_SIZE,
} from "./envelope.js";
export * from "./errors.js";
export * from "./format.js";
export * from "./reader.js";
export * from "./redact.js";
export * from "./schema.js";
export * from "./writer.js";
