import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { extract, type Header } from 'tar-stream';

export interface ImageFile {
  name: string;
  mode: number;
  type: Header['type'];
  /** The security.capability extended attribute, when set (file capabilities). */
  hasCapabilities: boolean;
}

export interface ImageScan {
  files: ImageFile[];
  /** Regular files whose content matched one of the patterns: name → pattern source. */
  matches: { name: string; pattern: string }[];
}

/**
 * Reads an image's whole filesystem as `docker export` gives it (a container is created,
 * never started) and reports every file with its mode and whether it carries file
 * capabilities; optionally scans regular files up to `maxScanBytes` for patterns (keys,
 * certificates). No tool inside the image is trusted to tell the truth about itself.
 */
export async function scanImage(docker: Docker, image: string, patterns: RegExp[] = [], maxScanBytes = 1024 * 1024): Promise<ImageScan> {
  const container = await docker.createContainer({ Image: image, Entrypoint: ['/nonexistent'], Cmd: [], HostConfig: { NetworkMode: 'none' } });
  try {
    const stream = (await container.export()) as unknown as Readable;
    const files: ImageFile[] = [];
    const matches: { name: string; pattern: string }[] = [];
    const ex = extract();
    ex.on('entry', (header, body, next) => {
      const pax = (header.pax ?? {}) as Record<string, string>;
      const file: ImageFile = {
        name: `/${header.name.replace(/^\.?\/*/, '')}`,
        mode: header.mode ?? 0,
        type: header.type,
        hasCapabilities: Object.keys(pax).some((k) => k.toLowerCase() === 'schily.xattr.security.capability'),
      };
      files.push(file);
      if (header.type !== 'file' || patterns.length === 0 || (header.size ?? 0) > maxScanBytes) {
        body.resume();
        body.on('end', next);
        return;
      }
      const chunks: Buffer[] = [];
      body.on('data', (c: unknown) => chunks.push(c as Buffer));
      body.on('end', () => {
        const text = Buffer.concat(chunks).toString('latin1');
        for (const p of patterns) if (p.test(text)) matches.push({ name: file.name, pattern: p.source });
        next();
      });
    });
    await new Promise<void>((resolve, reject) => {
      ex.on('finish', resolve);
      ex.on('error', reject);
      stream.on('error', reject);
      stream.pipe(ex);
    });
    return { files, matches };
  } finally {
    await container.remove({ force: true, v: true });
  }
}
