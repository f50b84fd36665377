/**
 * A webhook receiver for tests: a real HTTP listener on 127.0.0.1, port 0, that checks every Standard Webhooks
 * signature (HW-HOOK-1) against the endpoint's secret and answers the statuses of `plan` in turn (then 200; 401 for
 * a request whose signature does not verify). Used by the webhook service's tests and the end-to-end test.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

/** One request the receiver got: its webhook-id, parsed body, whether the signature verified, and the status answered. */
export interface ReceivedWebhook {
  id: string;
  body: { type: string; timestamp: string; data: Record<string, unknown> };
  verified: boolean;
  answered: number;
}

/** A listening receiver; `setSecret` once the plane told the endpoint's secret. */
export interface WebhookReceiver {
  url: string;
  received: ReceivedWebhook[];
  setSecret(value: string): void;
  close(): Promise<void>;
}

/** Starts a receiver answering `plan` (the array is consumed: push more statuses to fail later requests). */
export async function startWebhookReceiver(plan: number[] = []): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  let secret = "";
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const payload = Buffer.concat(chunks).toString("utf8");
      let verified = false;
      try {
        new Webhook(secret).verify(payload, req.headers as Record<string, string>);
        verified = true;
      } catch {
        verified = false;
      }
      const answered = verified ? (plan.shift() ?? 200) : 401;
      received.push({ id: String(req.headers["webhook-id"]), body: JSON.parse(payload), verified, answered });
      res.writeHead(answered).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    setSecret(value: string) {
      secret = value;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
