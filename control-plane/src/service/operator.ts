/**
 * ControlPlaneService: the operator- and enrollment-facing half of the domain (what control-plane/src/http calls),
 * made of one module per concern. Every mutating method writes its audit row in the same transaction as the
 * change (HW-DB-1).
 */
import { createApiTokens } from "./api-tokens.js";
import { createChallenges } from "./challenges.js";
import { createContainment } from "./containment.js";
import type { ServiceContext } from "./context.js";
import { createEnrollment } from "./enrollment.js";
import { createQueries } from "./queries.js";
import { createReferenceValues } from "./reference-values.js";
import type { ControlPlaneService } from "./types.js";

/** The ControlPlaneService over `ctx`. */
export function createOperatorService(ctx: ServiceContext): ControlPlaneService {
  return {
    ...createEnrollment(ctx),
    ...createApiTokens(ctx),
    ...createQueries(ctx),
    ...createChallenges(ctx),
    ...createContainment(ctx),
    ...createReferenceValues(ctx),
  };
}
