// A throw-away self-signed certificate for 127.0.0.1/localhost, made with the system `openssl` at startup.
// Used for the HTTPS side of the simulator's single port (media uploads, and wss:// if a client wants it).
// Returns null when openssl is not available: everything else keeps working, only uploads are refused.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const makeSelfSignedCert = () => {
	const dir = mkdtempSync(join(tmpdir(), 'wa-sim-tls-'));
	try {
		const key = join(dir, 'key.pem');
		const cert = join(dir, 'cert.pem');
		execFileSync(
			'openssl',
			[
				'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
				'-keyout', key, '-out', cert, '-days', '30', '-subj', '/CN=wa-sim',
				'-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'
			],
			{ stdio: 'ignore', timeout: 10000 }
		);
		return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
	} catch {
		return null;
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
};
