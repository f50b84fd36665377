CREATE TABLE "rollout_devices" (
	"rollout_id" text NOT NULL,
	"device_id" text NOT NULL,
	"group_index" integer NOT NULL,
	"status" text NOT NULL,
	"command_seq" integer,
	"phase" text,
	"reason" text,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "rollout_devices_pk" PRIMARY KEY("rollout_id","device_id")
);
--> statement-breakpoint
CREATE TABLE "rollouts" (
	"id" text PRIMARY KEY NOT NULL,
	"target_name" text NOT NULL,
	"version" text NOT NULL,
	"selector" jsonb NOT NULL,
	"groups" jsonb NOT NULL,
	"success_threshold" integer NOT NULL,
	"error_threshold" integer NOT NULL,
	"state" text NOT NULL,
	"current_group" integer DEFAULT 0 NOT NULL,
	"reason" text,
	"created_by" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tuf_images" (
	"sha256" text PRIMARY KEY NOT NULL,
	"length" integer NOT NULL,
	"uploaded_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tuf_metadata" (
	"role" text NOT NULL,
	"version" integer NOT NULL,
	"body" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "tuf_metadata_role_version_pk" PRIMARY KEY("role","version")
);
--> statement-breakpoint
ALTER TABLE "rollout_devices" ADD CONSTRAINT "rollout_devices_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "rollout_devices_group_idx" ON "rollout_devices" USING btree ("rollout_id","group_index");--> statement-breakpoint
CREATE INDEX "rollouts_state_idx" ON "rollouts" USING btree ("state");