/** The operator ControlPlaneService contract (testing/operator-contract.ts) on the real service over every database, and on the HTTP tests' fake. */
import { onEveryDatabase } from "../db/test-postgres.js";
import { FakeControlPlaneService } from "../http/testing/fake-service.js";
import { operatorServiceContract } from "./testing/operator-contract.js";
import { openServices } from "./testing/services.js";

onEveryDatabase("ControlPlaneService (operator) contract", (backend, open) => {
  operatorServiceContract(`the service (${backend})`, async () => {
    const { services, close } = await openServices(open);
    return { service: services.service, close };
  });
});

operatorServiceContract("the HTTP tests' fake", async () => ({ service: new FakeControlPlaneService(), close: async () => {} }));
