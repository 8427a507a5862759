import type { Algorithms } from 'ssh2';

/**
 * What the gateway's SSH server offers. Its only clients are our brokers (ssh2, or OpenSSH
 * ≥ 7.4 in tests and by hand), so it offers only what they use and auditors rate as
 * sound: curve25519 key exchange (no NIST curves, no finite-field groups), AEAD ciphers, encrypt-then-MAC SHA-2 MACs (negotiated only if a client offers
 * no AEAD cipher) and no compression at all (zlib before authentication hands a pre-auth
 * peer the decompressor). ssh2 always adds the strict key exchange marker
 * (kex-strict-s-v00@openssh.com) that closes Terrapin (CVE-2023-48795).
 * Host key algorithms follow the host key: ed25519, the one keygen and the gateway make.
 * test/security/ssh-audit.test.ts holds this to ssh-audit.
 */
export const SSH_SERVER_ALGORITHMS: Algorithms = {
  kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org'],
  cipher: ['chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com', 'aes128-gcm@openssh.com'],
  hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'],
  compress: ['none'],
};
