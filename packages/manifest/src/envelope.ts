import {
  type CipherGCM,
  constants,
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  type DecipherGCM,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { ManifestError } from "./errors.js";

/** Cipher of the data segments. The data key is always wrapped with RSA-OAEP (SHA-256). */
export type EncryptionAlgorithm = "aes256gcm-rsa" | "chacha20-rsa";

export interface EncryptOptions {
  /** PEM of the RSA public key (SPKI or PKCS#1) that wraps the data key. */
  readonly publicKeyPem: string;
  /** @default "aes256gcm-rsa" */
  readonly algorithm?: EncryptionAlgorithm;
}

export interface DecryptOptions {
  /** PEM of the RSA private key (PKCS#8 or PKCS#1, encrypted or not). */
  readonly privateKeyPem: string;
  /** Passphrase of an encrypted private key; the CLI reads it from `CAIRN_RSA_PASSPHRASE`. */
  readonly passphrase?: string;
}

/** First 8 bytes of an encrypted dump: ASCII `CAIRNENC`. */
export const ENVELOPE_MAGIC = Buffer.from("CAIRNENC", "ascii");
export const ENVELOPE_VERSION = 1;
/** Plaintext bytes per segment written by this package. */
export const SEGMENT_SIZE = 64 * 1024;
/** Largest segment a reader accepts, so a forged header cannot make it buffer without bound. */
const MAX_SEGMENT_SIZE = 16 * 1024 * 1024;
const NONCE_PREFIX_LENGTH = 7;
const TAG_LENGTH = 16;
const KEY_LENGTH = 32;
const FINAL_BIT = 0x8000_0000;
/** magic 8, version 1, algorithm 1, segment size 4, nonce prefix 7, wrapped key length 2. */
const FIXED_HEADER_LENGTH = 8 + 1 + 1 + 4 + NONCE_PREFIX_LENGTH + 2;

const ALGORITHM_IDS: Readonly<Record<EncryptionAlgorithm, number>> = {
  "aes256gcm-rsa": 1,
  "chacha20-rsa": 2,
};
const CIPHERS: Readonly<Record<number, string>> = { 1: "aes-256-gcm", 2: "chacha20-poly1305" };

/** True when `bytes` start with the envelope magic. */
export const isEnvelope = (bytes: Uint8Array): boolean =>
  bytes.length >= ENVELOPE_MAGIC.length && ENVELOPE_MAGIC.equals(bytes.subarray(0, ENVELOPE_MAGIC.length));

// Nonce = prefix (7) ‖ segment index (u32 BE) ‖ final flag (1): unique per segment under one data key,
// and a segment moved to another position or marked final elsewhere fails authentication.
const nonceFor = (prefix: Buffer, index: number, final: boolean): Buffer => {
  const nonce = Buffer.alloc(12);
  prefix.copy(nonce, 0);
  nonce.writeUInt32BE(index, NONCE_PREFIX_LENGTH);
  nonce[11] = final ? 1 : 0;
  return nonce;
};

// AAD = the whole envelope header ‖ segment index (u32 BE) ‖ final flag (1), so the header (algorithm,
// wrapped key) cannot be altered either.
const aadFor = (header: Buffer, index: number, final: boolean): Buffer => {
  const aad = Buffer.alloc(header.length + 5);
  header.copy(aad, 0);
  aad.writeUInt32BE(index, header.length);
  aad[header.length + 4] = final ? 1 : 0;
  return aad;
};

const publicKeyFrom = (pem: string): KeyObject => {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (cause) {
    throw new ManifestError("INVALID_OPTIONS", "encrypt.publicKeyPem is not a readable PEM public key.", {
      cause,
    });
  }
  if (key.asymmetricKeyType !== "rsa") {
    throw new ManifestError(
      "INVALID_OPTIONS",
      `encrypt.publicKeyPem is ${key.asymmetricKeyType ?? "not an asymmetric"} key, not an RSA key.`,
    );
  }
  return key;
};

const privateKeyFrom = (options: DecryptOptions): KeyObject => {
  try {
    return createPrivateKey(
      options.passphrase === undefined
        ? { key: options.privateKeyPem, format: "pem" }
        : { key: options.privateKeyPem, format: "pem", passphrase: options.passphrase },
    );
  } catch (cause) {
    // OpenSSL's errors differ by key format and version; whether the PEM is encrypted is plain to see.
    if (/ENCRYPTED/.test(options.privateKeyPem)) {
      throw options.passphrase === undefined
        ? new ManifestError(
            "BAD_PASSPHRASE",
            "The private key is encrypted and no passphrase was given (set CAIRN_RSA_PASSPHRASE).",
            { cause },
          )
        : new ManifestError("BAD_PASSPHRASE", "The passphrase of the private key is wrong.", { cause });
    }
    throw new ManifestError("INVALID_OPTIONS", "decrypt.privateKeyPem is not a readable PEM private key.", {
      cause,
    });
  }
};

/**
 * A Transform that wraps its input in the cairn encryption envelope: header, then segments of
 * `SEGMENT_SIZE` plaintext bytes, each `u32 BE (final bit ‖ length) ‖ ciphertext ‖ 16-byte tag`.
 * Memory is one segment, whatever the input size.
 */
export function createEncryptStream(options: EncryptOptions): Transform {
  const algorithm = options.algorithm ?? "aes256gcm-rsa";
  const algorithmId = ALGORITHM_IDS[algorithm];
  if (algorithmId === undefined) {
    throw new ManifestError(
      "INVALID_OPTIONS",
      `encrypt.algorithm "${String(algorithm)}" is unknown (known: aes256gcm-rsa, chacha20-rsa).`,
    );
  }
  const publicKey = publicKeyFrom(options.publicKeyPem);
  const dataKey = randomBytes(KEY_LENGTH);
  const wrapped = publicEncrypt(
    { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
    dataKey,
  );
  const prefix = randomBytes(NONCE_PREFIX_LENGTH);
  const header = Buffer.alloc(FIXED_HEADER_LENGTH + wrapped.length);
  let at = ENVELOPE_MAGIC.copy(header, 0);
  header[at++] = ENVELOPE_VERSION;
  header[at++] = algorithmId;
  at = header.writeUInt32BE(SEGMENT_SIZE, at);
  at += prefix.copy(header, at);
  at = header.writeUInt16BE(wrapped.length, at);
  wrapped.copy(header, at);

  const cipherName = CIPHERS[algorithmId]!;
  const pending = Buffer.alloc(SEGMENT_SIZE);
  let filled = 0;
  let index = 0;
  let headerSent = false;

  const seal = (stream: Transform, plaintext: Buffer, final: boolean): void => {
    if (!headerSent) {
      stream.push(header);
      headerSent = true;
    }
    if (index > 0xffff_ffff) throw new ManifestError("INVALID_OPTIONS", "The dump is too large to encrypt.");
    const cipher = createCipheriv(cipherName as "aes-256-gcm", dataKey, nonceFor(prefix, index, final), {
      authTagLength: TAG_LENGTH,
    }) as CipherGCM;
    cipher.setAAD(aadFor(header, index, final), { plaintextLength: plaintext.length });
    const length = Buffer.alloc(4);
    length.writeUInt32BE((final ? FINAL_BIT : 0) + plaintext.length);
    const body = Buffer.concat([length, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    stream.push(body);
    index++;
  };

  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      try {
        let offset = 0;
        while (offset < chunk.length) {
          const n = chunk.copy(pending, filled, offset);
          filled += n;
          offset += n;
          // Full segments go out at once; the final one, sealed in flush, may be empty.
          if (filled === SEGMENT_SIZE) {
            seal(this, pending, false);
            filled = 0;
          }
        }
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        seal(this, pending.subarray(0, filled), true);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}

/** Reads exact byte counts from an async iterable of chunks. */
export class ByteReader {
  readonly #source: AsyncIterator<Uint8Array>;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #done = false;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
    this.#source =
      Symbol.asyncIterator in source
        ? source[Symbol.asyncIterator]()
        : (async function* () {
            yield* source;
          })();
  }

  /** Buffers at least `n` bytes when the source has them; returns how many are buffered. */
  async fill(n: number): Promise<number> {
    while (this.#buffered < n && !this.#done) {
      const next = await this.#source.next();
      if (next.done) {
        this.#done = true;
        break;
      }
      const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
      if (chunk.length === 0) continue;
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    return this.#buffered;
  }

  /** The first `n` buffered bytes without consuming them (fewer at the end of input). */
  async peek(n: number): Promise<Buffer> {
    await this.fill(n);
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = all.length > 0 ? [all] : [];
    return all.subarray(0, n);
  }

  /** Up to `n` bytes; fewer only at the end of input. */
  async read(n: number): Promise<Buffer> {
    const head = await this.peek(n);
    const all = this.#chunks[0];
    this.#chunks = all !== undefined && all.length > head.length ? [all.subarray(head.length)] : [];
    this.#buffered -= head.length;
    this.consumed += head.length;
    return head;
  }

  /** Everything left, chunk by chunk. */
  async *rest(): AsyncGenerator<Buffer> {
    try {
      const buffered = this.#chunks;
      this.#chunks = [];
      this.#buffered = 0;
      for (const chunk of buffered) yield chunk;
      while (true) {
        const next = await this.#source.next();
        if (next.done) return;
        yield Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
      }
    } finally {
      // A consumer that stops early must not leave the input (a file, a socket) open.
      await this.close();
    }
  }

  /** Stops the source early (closes the underlying stream). */
  async close(): Promise<void> {
    await this.#source.return?.();
  }
}

/**
 * Decrypts an envelope read from `input` (positioned at the magic) and yields the plaintext segment
 * by segment, after each has been authenticated.
 */
export async function* decryptEnvelope(input: ByteReader, options: DecryptOptions): AsyncGenerator<Buffer> {
  try {
    yield* decryptSegments(input, options);
  } finally {
    await input.close();
  }
}

async function* decryptSegments(input: ByteReader, options: DecryptOptions): AsyncGenerator<Buffer> {
  const fixed = await input.read(FIXED_HEADER_LENGTH);
  if (fixed.length < FIXED_HEADER_LENGTH) {
    throw new ManifestError(
      "TRUNCATED",
      `The encryption header ends at byte ${fixed.length}, before it is complete.`,
    );
  }
  const version = fixed[8]!;
  if (version !== ENVELOPE_VERSION) {
    throw new ManifestError(
      "UNSUPPORTED_VERSION",
      `Encryption envelope version ${version} is not supported by this reader (supports ${ENVELOPE_VERSION}).`,
    );
  }
  const cipherName = CIPHERS[fixed[9]!];
  if (cipherName === undefined) {
    throw new ManifestError(
      "CORRUPT",
      `Byte 9 of the encryption header names unknown algorithm ${fixed[9]}.`,
    );
  }
  const segmentSize = fixed.readUInt32BE(10);
  if (segmentSize === 0 || segmentSize > MAX_SEGMENT_SIZE) {
    throw new ManifestError(
      "CORRUPT",
      `Bytes 10-13 of the encryption header give an invalid segment size ${segmentSize}.`,
    );
  }
  const prefix = Buffer.from(fixed.subarray(14, 14 + NONCE_PREFIX_LENGTH));
  const wrappedLength = fixed.readUInt16BE(14 + NONCE_PREFIX_LENGTH);
  const wrapped = await input.read(wrappedLength);
  if (wrapped.length < wrappedLength) {
    throw new ManifestError("TRUNCATED", "The encryption header ends inside the wrapped data key.");
  }
  const header = Buffer.concat([fixed, wrapped]);
  const privateKey = privateKeyFrom(options);
  if (privateKey.asymmetricKeyType !== "rsa") {
    throw new ManifestError("INVALID_OPTIONS", "decrypt.privateKeyPem is not an RSA private key.");
  }
  let dataKey: Buffer;
  try {
    dataKey = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
      wrapped,
    );
  } catch (cause) {
    throw new ManifestError(
      "WRONG_KEY",
      "The private key cannot unwrap the data key: the dump was encrypted for a different key.",
      { cause },
    );
  }
  if (dataKey.length !== KEY_LENGTH) {
    throw new ManifestError(
      "WRONG_KEY",
      "The unwrapped data key has the wrong length: wrong key or altered header.",
    );
  }

  for (let index = 0; ; index++) {
    const at = input.consumed;
    const lengthBytes = await input.read(4);
    if (lengthBytes.length === 0) {
      throw new ManifestError(
        "TRUNCATED",
        `The ciphertext ends at byte ${at} after segment ${index - 1}, before its final segment.`,
      );
    }
    if (lengthBytes.length < 4) {
      throw new ManifestError(
        "TRUNCATED",
        `The ciphertext ends at byte ${input.consumed} inside segment ${index}.`,
      );
    }
    const word = lengthBytes.readUInt32BE(0);
    const final = (word & FINAL_BIT) !== 0;
    const length = word & ~FINAL_BIT;
    if (length > segmentSize || (!final && length !== segmentSize)) {
      throw new ManifestError(
        "DECRYPT_FAILED",
        `Segment ${index} at byte ${at} has an invalid length ${length}: the ciphertext was altered.`,
      );
    }
    const body = await input.read(length + TAG_LENGTH);
    if (body.length < length + TAG_LENGTH) {
      throw new ManifestError(
        "TRUNCATED",
        `The ciphertext ends at byte ${input.consumed} inside segment ${index}.`,
      );
    }
    const decipher = createDecipheriv(cipherName as "aes-256-gcm", dataKey, nonceFor(prefix, index, final), {
      authTagLength: TAG_LENGTH,
    }) as DecipherGCM;
    decipher.setAAD(aadFor(header, index, final), { plaintextLength: length });
    decipher.setAuthTag(body.subarray(length));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(body.subarray(0, length)), decipher.final()]);
    } catch (cause) {
      throw new ManifestError(
        "DECRYPT_FAILED",
        `Segment ${index} at byte ${at} failed authentication: the ciphertext was altered or its segments reordered.`,
        { cause },
      );
    }
    if (plaintext.length > 0) yield plaintext;
    if (final) break;
  }
  const trailing = await input.peek(1);
  if (trailing.length > 0) {
    throw new ManifestError(
      "CORRUPT",
      `Unexpected bytes at byte ${input.consumed} after the final encrypted segment.`,
    );
  }
}
