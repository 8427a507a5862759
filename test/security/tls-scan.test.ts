import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { renderNginxConf, type NginxOptions } from '../../services/gateway/nginx/config';
import { ensureServerCertificate } from '../../services/gateway/tls/certificate';
import { SERVER_CERT_DAYS } from '../../services/common/pki/certificates';
import { requireBinary } from '../support/binaries';
import { silentLogger } from '../support/logger';
import { freePort } from '../support/ports';
import { tempDir } from '../support/tmp';
import { waitFor } from '../support/wait';

interface CipherSuiteResult {
  is_tls_version_supported: boolean;
  accepted_cipher_suites: { cipher_suite: { name: string } }[];
}

interface SslyzeScan {
  scan_status: string;
  scan_result: {
    certificate_info: {
      result: {
        certificate_deployments: {
          received_chain_contains_anchor_certificate: boolean;
          received_chain_has_valid_order: boolean;
          verified_chain_has_sha1_signature: boolean;
          path_validation_results: { trust_store: { name: string }; validation_error: string | null }[];
        }[];
      };
    };
    ssl_2_0_cipher_suites: { result: CipherSuiteResult };
    ssl_3_0_cipher_suites: { result: CipherSuiteResult };
    tls_1_0_cipher_suites: { result: CipherSuiteResult };
    tls_1_1_cipher_suites: { result: CipherSuiteResult };
    tls_1_2_cipher_suites: { result: CipherSuiteResult };
    tls_1_3_cipher_suites: { result: CipherSuiteResult };
    elliptic_curves: { result: { supported_curves: { name: string }[] } };
    tls_compression: { result: { supports_compression: boolean } };
    heartbleed: { result: { is_vulnerable_to_heartbleed: boolean } };
    openssl_ccs_injection: { result: { is_vulnerable_to_ccs_injection: boolean } };
    tls_fallback_scsv: { result: { supports_fallback_scsv: boolean } };
    session_renegotiation: { result: { supports_secure_renegotiation: boolean; is_vulnerable_to_client_renegotiation_dos: boolean } };
    tls_extended_master_secret: { result: { supports_ems_extension: boolean } };
    tls_1_3_early_data: { result: { supports_early_data: boolean } };
  };
}

interface ScanOutcome {
  code: number;
  stdout: string;
  scan: SslyzeScan;
}

/**
 * Mozilla's "intermediate" TLS 1.2 suites (guidelines 5.7) that an ECDSA certificate can
 * use: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305, nothing else.
 */
const INTERMEDIATE_TLS12_ECDSA = [
  'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
];
const INTERMEDIATE_TLS13 = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];
const INTERMEDIATE_CURVES = ['X25519', 'prime256v1', 'secp256r1', 'secp384r1'];

/**
 * sslyze (from PyPI, scripts/lib/scanners.sh) against `port`, with its check against
 * Mozilla's "intermediate" configuration (its default) and the generated certificate as the
 * trust anchor a client pins. Exit status 0 means compliant; the JSON is read as well.
 */
function sslyze(port: number, caFile: string, jsonFile: string): Promise<ScanOutcome> {
  const bin = process.env.NONSTOP_SSLYZE;
  if (!bin) throw new Error('NONSTOP_SSLYZE is not set: run the suite through scripts/test.sh, which installs sslyze (scripts/lib/scanners.sh)');
  return new Promise((resolve, reject) => {
    execFile(
      bin,
      ['--mozilla_config=intermediate', '--early_data', `--certinfo_ca_file=${caFile}`, `--json_out=${jsonFile}`, `localhost:${port}`],
      { encoding: 'utf8', timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        try {
          const report = JSON.parse(readFileSync(jsonFile, 'utf8')) as { server_scan_results: SslyzeScan[] };
          assert.equal(report.server_scan_results.length, 1, 'one server scanned');
          resolve({ code, stdout, scan: report.server_scan_results[0]! });
        } catch (e) {
          reject(new Error(`sslyze exited ${code} without a readable JSON report (${String(e)}): ${stdout}${stderr}`));
        }
      },
    );
  });
}

function accepted(r: CipherSuiteResult): string[] {
  return r.accepted_cipher_suites.map((s) => s.cipher_suite.name).sort();
}

/** The lines of sslyze's compliance section (its verdict and each issue it names). */
function complianceSection(stdout: string): string {
  const at = stdout.indexOf('COMPLIANCE AGAINST TLS CONFIGURATION');
  return at < 0 ? '' : stdout.slice(at);
}

/**
 * The public TLS endpoint as the gateway configures it (renderNginxConf) with the
 * certificate the gateway generates on first start (ensureServerCertificate), scanned by
 * sslyze as an outside auditor would. A second nginx with the same certificate but
 * OpenSSL's default suites and curves is the positive control: the same scan must flag it,
 * so a scanner that checked nothing could not pass the first.
 */
describe('sslyze against the gateway TLS endpoint', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let nginxBin: string;
  let certFile: string;
  const procs: ChildProcess[] = [];

  before(async () => {
    nginxBin = requireBinary('nginx', '/usr/sbin/nginx', '/usr/bin/nginx');
    tmp = tempDir('nonstop-tls-scan-');
    // nginx started as root hands connections to unprivileged workers: they read the run dir.
    chmodSync(tmp.dir, 0o755);
    certFile = join(tmp.dir, 'server.crt');
    await ensureServerCertificate(certFile, join(tmp.dir, 'server.key'), ['localhost', '127.0.0.1'], silentLogger());
  });

  after(async () => {
    for (const p of procs) {
      if (p.exitCode === null && p.signalCode === null) {
        const exited = once(p, 'exit');
        p.kill('SIGTERM');
        await exited;
      }
    }
    tmp?.cleanup();
  });

  /** nginx with the gateway's rendered conf, `edit` applied to the text; returns its HTTPS port. */
  async function startNginx(name: string, edit: (conf: string) => string = (c) => c): Promise<number> {
    const runDir = join(tmp.dir, name);
    const [httpPort, httpsPort, appPort] = [await freePort(), await freePort(), await freePort()];
    const opts: NginxOptions = {
      runDir,
      accessLog: join(runDir, 'access.log'),
      httpPort,
      httpsPort,
      serverNames: ['localhost'],
      publicHttpsPort: httpsPort,
      ipv6: false,
      appPort,
      certFile,
      keyFile: join(tmp.dir, 'server.key'),
      maxBodyBytes: 1_048_576,
      ratePerSecond: 1000,
      rateBurst: 1000,
      connectionsPerAddress: 100,
      requestTimeoutMs: 5000,
    };
    mkdirSync(runDir, { mode: 0o755 });
    const confPath = join(runDir, 'nginx.conf');
    writeFileSync(confPath, edit(renderNginxConf(opts)));
    let stderr = '';
    const nginx = spawn(nginxBin, ['-c', confPath, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    procs.push(nginx);
    await waitFor(`nginx (${name}) on ${httpsPort}`, () => {
      if (nginx.exitCode !== null) throw new Error(`nginx exited ${nginx.exitCode}: ${stderr}`);
      return new Promise<boolean>((resolve) => {
        const s = connect(httpsPort, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
    });
    return httpsPort;
  }

  it('generates a certificate of at most 365 days, a leaf for the configured names', () => {
    const cert = new X509Certificate(readFileSync(certFile));
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    assert.ok(days <= 365 && days >= 364, `lifetime ${days} days`);
    assert.equal(SERVER_CERT_DAYS, 365);
    assert.equal(cert.ca, false);
    assert.match(cert.subjectAltName ?? '', /DNS:localhost/);
  });

  it('meets Mozilla intermediate with no failure or warning but the self-signed anchor, and flags OpenSSL defaults', async () => {
    const port = await startNginx('gateway');
    const ours = await sslyze(port, certFile, join(tmp.dir, 'gateway.json'));
    const r = ours.scan.scan_result;
    assert.equal(ours.scan.scan_status, 'COMPLETED');

    // sslyze's own verdict against the profile: exit 0 and "Compliant", no issue listed.
    assert.match(complianceSection(ours.stdout), /OK - Compliant\./, complianceSection(ours.stdout) || ours.stdout);
    assert.equal(ours.code, 0, complianceSection(ours.stdout));

    // The same facts from the JSON, so a change of sslyze's verdict logic cannot hide one.
    for (const old of ['ssl_2_0_cipher_suites', 'ssl_3_0_cipher_suites', 'tls_1_0_cipher_suites', 'tls_1_1_cipher_suites'] as const) {
      assert.equal(r[old].result.is_tls_version_supported, false, `${old} refused`);
    }
    assert.deepEqual(accepted(r.tls_1_2_cipher_suites.result), [...INTERMEDIATE_TLS12_ECDSA].sort());
    assert.deepEqual(accepted(r.tls_1_3_cipher_suites.result), [...INTERMEDIATE_TLS13].sort());
    const curves = r.elliptic_curves.result.supported_curves.map((c) => c.name);
    assert.ok(curves.length > 0, 'curves were probed');
    assert.deepEqual(curves.filter((c) => !INTERMEDIATE_CURVES.includes(c)), [], `curves offered: ${curves.join(', ')}`);
    assert.equal(r.tls_compression.result.supports_compression, false);
    assert.equal(r.heartbleed.result.is_vulnerable_to_heartbleed, false);
    assert.equal(r.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection, false);
    assert.equal(r.tls_fallback_scsv.result.supports_fallback_scsv, true);
    assert.equal(r.session_renegotiation.result.supports_secure_renegotiation, true);
    assert.equal(r.session_renegotiation.result.is_vulnerable_to_client_renegotiation_dos, false);
    assert.equal(r.tls_extended_master_secret.result.supports_ems_extension, true);
    assert.equal(r.tls_1_3_early_data.result.supports_early_data, false);

    // The certificate: trusted by the anchor a client pins (sslyze validates the path with
    // Python's cryptography, which applies the WebPKI rules: AKI, SKI, key usage, SAN).
    // The public stores cannot trust a generated certificate (that is the operator's own
    // TLS_CERT_FILE), and a self-signed certificate is its own anchor, so sslyze's one
    // warning, "received chain contains the anchor", is what self-signed means.
    const [deployment] = r.certificate_info.result.certificate_deployments;
    assert.ok(deployment);
    const supplied = deployment.path_validation_results.find((p) => p.trust_store.name === 'Supplied CA file');
    assert.ok(supplied, 'the pinned certificate was used as a trust store');
    assert.equal(supplied.validation_error, null);
    assert.equal(deployment.received_chain_has_valid_order, true);
    assert.equal(deployment.verified_chain_has_sha1_signature, false);
    assert.equal(deployment.received_chain_contains_anchor_certificate, true);

    // Positive control: the same certificate behind nginx's defaults (what the gateway
    // served before) is flagged for its suites and curves.
    const defaults = await startNginx('defaults', (conf) => conf.replace(/^\s*ssl_(ciphers|ecdh_curve) .*$/gm, ''));
    const flagged = await sslyze(defaults, certFile, join(tmp.dir, 'defaults.json'));
    assert.equal(flagged.scan.scan_status, 'COMPLETED');
    assert.notEqual(flagged.code, 0);
    const verdict = complianceSection(flagged.stdout);
    assert.match(verdict, /FAILED - Not compliant/);
    assert.match(verdict, /\* ciphers: .*CBC/);
    assert.match(verdict, /\* tls_curves: .*X448/);
  });
});
