/**
 * The DeviceSideService contract (testing/device-side-contract.ts) on the real service over every database, and
 * on the broker tests' fake.
 */
import { deviceIdFromPublicKey, fromBase64Url } from "../../../shared/crypto/index.js";
import { FakeDeviceSide } from "../broker/testing/fake-device-side.js";
import { onEveryDatabase } from "../db/test-postgres.js";
import { deviceSideContract } from "./testing/device-side-contract.js";
import { openServices } from "./testing/services.js";

onEveryDatabase("DeviceSideService contract", (backend, open) => {
  deviceSideContract(
    `the service (${backend})`,
    async () => {
      const { services, nowMs, close } = await openServices(open);
      return {
        service: services.deviceSide,
        nowMs,
        enroll: async (publicKey, model) => void (await services.service.preauthorizeDevice({ kind: "operator", id: "tok_contract", role: "operator" }, { publicKey, model })),
        close,
      };
    },
    { checksLiveness: true },
  );
});

deviceSideContract(
  "the broker's fake",
  async () => {
    const fake = new FakeDeviceSide();
    return {
      service: fake,
      nowMs: Date.now(),
      enroll: async (publicKey) => fake.setIdentity(deviceIdFromPublicKey(fromBase64Url(publicKey)), publicKey, "accepted"),
      close: async () => {},
    };
  },
  { checksLiveness: false },
);
