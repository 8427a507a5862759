import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** The compiled nonstop-admin, run as the image runs it (`node .../cli.js`). */
const CLI = join(__dirname, '../../services/core/admin/cli.js');

export interface AdminRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs nonstop-admin in its own process, as `docker compose exec core nonstop-admin` does,
 * with only PATH and `env` in its environment (DB_ENGINE, DB_PORT, DATA_DIR, RUN_DIR); killed
 * after `timeoutMs` (a key rotation under load rewraps every record and may need longer).
 */
export function runAdminCli(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<AdminRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
