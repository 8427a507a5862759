/** What the knock door asks of a firewall: a window per knocked source (nftables.ts), or nothing. */
export interface WindowFirewall {
  allow(address: string, windowMs: number): Promise<void>;
  revoke(address: string): Promise<void>;
}

/**
 * FIREWALL=off: the host filters the SSH port, so there is no window to open or close. The
 * app still admits only addresses that knocked (the door's grants), so the door runs
 * unchanged on this null object instead of asking at every step whether there is a firewall.
 */
export class NoFirewall implements WindowFirewall {
  allow(): Promise<void> {
    return Promise.resolve();
  }

  revoke(): Promise<void> {
    return Promise.resolve();
  }
}
