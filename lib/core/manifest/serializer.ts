import { ErrorCode, FloeError } from '../errors.js';
import { MANIFEST_FORMAT_VERSION, ManifestSchema, type Manifest } from './model.js';

/** Reads and writes `_metadata`, refusing corrupt content and format versions it does not know. */
export const ManifestSerializer = {
  /** Serializes a manifest to UTF-8 JSON bytes, validating it first. */
  serialize(manifest: Manifest): Uint8Array {
    const checked = ManifestSchema.parse(manifest);
    return new TextEncoder().encode(JSON.stringify(checked, null, 1));
  },

  /** Parses `_metadata` bytes; `source` names the file in error messages. */
  deserialize(bytes: Uint8Array | string, source = '_metadata'): Manifest {
    const text = typeof bytes === 'string' ? bytes : new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new FloeError(ErrorCode.CorruptManifest, `${source} is corrupt: not valid JSON (${(e as Error).message})`, { cause: e });
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new FloeError(ErrorCode.CorruptManifest, `${source} is corrupt: expected a JSON object`);
    }
    const version = (raw as { formatVersion?: unknown }).formatVersion;
    if (version === undefined) {
      throw new FloeError(ErrorCode.CorruptManifest, `${source} is corrupt: it has no formatVersion`);
    }
    if (version !== MANIFEST_FORMAT_VERSION) {
      throw new FloeError(
        ErrorCode.UnsupportedManifestVersion,
        `${source} has formatVersion ${JSON.stringify(version)}, but this Floe reads only formatVersion ${MANIFEST_FORMAT_VERSION}`,
      );
    }
    const parsed = ManifestSchema.safeParse(raw);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new FloeError(ErrorCode.CorruptManifest, `${source} is corrupt:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    }
    return parsed.data;
  },
};
