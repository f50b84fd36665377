/**
 * RabbitMQ's MQTT TLS listener serves the plane's own server certificate (issued by the plane's CA, which agents
 * pin, HW-PIN-2): the plane writes it to `<dataDir>/broker-tls/` (server.pem with the chain, server.key 0600,
 * ca.pem) and rewrites it on every renewal. RabbitMQ reads the files when it starts; after a renewal an operator
 * (or scale:up) clears its PEM cache: `rabbitmqctl eval 'ssl:clear_pem_cache().'` (docs/scale.md).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { writeSecretFileAtomic } from "../../keys/index.js";
import type { PemPair, PlaneTls } from "../../tls/index.js";

export const BROKER_TLS_DIR = "broker-tls";

export interface BrokerTlsFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export function brokerTlsFiles(dataDir: string): BrokerTlsFiles {
  const dir = join(dataDir, BROKER_TLS_DIR);
  return { certFile: join(dir, "server.pem"), keyFile: join(dir, "server.key"), caFile: join(dir, "ca.pem") };
}

/** Writes the current pair and the CA, and again after each renewal. Resolves with the file paths. */
export async function writeBrokerTlsFiles(dataDir: string, tls: PlaneTls, logger: Logger): Promise<BrokerTlsFiles> {
  const files = brokerTlsFiles(dataDir);
  await mkdir(join(dataDir, BROKER_TLS_DIR), { recursive: true, mode: 0o700 });
  const write = async (pair: PemPair): Promise<void> => {
    await writeSecretFileAtomic(files.keyFile, pair.key);
    await writeSecretFileAtomic(files.certFile, pair.cert);
    await writeSecretFileAtomic(files.caFile, tls.ca.certPem);
  };
  await write(tls.current());
  tls.onRenew((pair) => {
    write(pair).then(
      () => logger.warn({ dir: join(dataDir, BROKER_TLS_DIR) }, "broker TLS files renewed: clear RabbitMQ's PEM cache (rabbitmqctl eval 'ssl:clear_pem_cache().')"),
      (error: unknown) => logger.error({ err: error }, "could not write the renewed broker TLS files"),
    );
  });
  return files;
}
