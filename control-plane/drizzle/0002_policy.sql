CREATE SEQUENCE "public"."policy_version_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
CREATE TABLE "device_policies" (
	"device_id" text PRIMARY KEY NOT NULL,
	"delivered_version" bigint NOT NULL,
	"delivered_hash" text NOT NULL,
	"delivered_seq" integer NOT NULL,
	"delivered_at" timestamp with time zone NOT NULL,
	"acked_version" bigint,
	"acked_at" timestamp with time zone,
	"last_failure" text
);
--> statement-breakpoint
CREATE TABLE "policies" (
	"id" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"scope_key" text NOT NULL,
	"scope" jsonb NOT NULL,
	"body" jsonb NOT NULL,
	"version" bigint NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"updated_by" jsonb NOT NULL
);
--> statement-breakpoint
ALTER TABLE "device_policies" ADD CONSTRAINT "device_policies_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "device_policies_acked_idx" ON "device_policies" USING btree ("acked_version");--> statement-breakpoint
CREATE UNIQUE INDEX "policies_kind_scope_idx" ON "policies" USING btree ("kind","scope_key");