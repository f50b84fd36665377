CREATE TABLE "telemetry_samples" (
	"device_id" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"hashrate_ghs" double precision,
	"temperatures_c" jsonb,
	"fan_rpm" jsonb,
	"active_pool" text,
	CONSTRAINT "telemetry_samples_device_id_at_pk" PRIMARY KEY("device_id","at")
);
--> statement-breakpoint
CREATE TABLE "ui_sessions" (
	"id_hash" text PRIMARY KEY NOT NULL,
	"token_id" text NOT NULL,
	"csrf_token" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "telemetry_samples_at_idx" ON "telemetry_samples" USING btree ("at");--> statement-breakpoint
CREATE INDEX "ui_sessions_token_idx" ON "ui_sessions" USING btree ("token_id");--> statement-breakpoint
CREATE INDEX "ui_sessions_expires_idx" ON "ui_sessions" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "devices_created_idx" ON "devices" USING btree ("created_at","id");