/**
 * Registers every kind of key `nonstop-keygen rotate` knows: one import per module in this
 * folder, each calling registerRotation for the names it owns.
 */
import './gateway-host-key';
import './broker-key';
import './queue-password';
import './knock-secret';
import './tls';
