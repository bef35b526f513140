-- LeadFactory schema: every capability of the design (targeting → funnel → operations).
--
-- Conventions
-- * Every tenant-owned table carries tenant_id; row-level security is ENABLED and FORCED on it and
--   the policy compares tenant_id with app_current_tenant(), which reads the transaction-local
--   setting `app.tenant_id` (see shared::db::tenant). With no tenant set, nothing is visible.
-- * Functions connect as a member of the role `leadfactory_app`, which owns nothing and does not
--   bypass RLS. Migrations run as the owner.
-- * Money that customers pay is integer cents (*_cents); vendor cost is integer micro-dollars
--   (*_micros, 1 cent = 10 000 micros) because single LLM calls cost fractions of a cent.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leadfactory_app') THEN
        CREATE ROLE leadfactory_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;

CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

-- ---------------------------------------------------------------- tenants and access
CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name          text NOT NULL,
    -- The public prefix identifies the key; only the SHA-256 of the secret part is stored.
    prefix        text NOT NULL UNIQUE,
    key_hash      bytea NOT NULL CHECK (length(key_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- The ops API must find a key's tenant before any tenant is set: this definer function is the one
-- narrow door through RLS, returning the tenant and hash for a prefix of a key that is not revoked.
CREATE FUNCTION api_key_lookup(p_prefix text)
    RETURNS TABLE (key_id uuid, tenant_id uuid, key_hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT id, tenant_id, key_hash FROM api_keys WHERE prefix = p_prefix AND revoked_at IS NULL $$;

-- ---------------------------------------------------------------- targeting
CREATE TABLE campaigns (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    vertical        text NOT NULL,
    categories      text[] NOT NULL DEFAULT '{}',
    zip_codes       text[] NOT NULL DEFAULT '{}',
    city            text,
    daily_quota     integer NOT NULL CHECK (daily_quota > 0),
    sender_email    text NOT NULL,
    sender_name     text NOT NULL,
    postal_address  text NOT NULL,
    experiment_id   uuid,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    CHECK (cardinality(zip_codes) > 0 OR city IS NOT NULL)
);
CREATE INDEX campaigns_active ON campaigns (tenant_id) WHERE status = 'active';

-- ---------------------------------------------------------------- run tracking
CREATE TABLE runs (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind         text NOT NULL DEFAULT 'nightly' CHECK (kind IN ('nightly', 'manual', 'local')),
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'partial')),
    run_date     date NOT NULL DEFAULT current_date,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    stats        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX runs_tenant_started ON runs (tenant_id, started_at DESC);
-- One nightly run per tenant per day, so a re-fired schedule joins the existing run.
CREATE UNIQUE INDEX runs_one_nightly_per_day ON runs (tenant_id, run_date) WHERE kind = 'nightly';

CREATE TABLE run_stage_stats (
    run_id      uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    stage       text NOT NULL,
    total       integer NOT NULL DEFAULT 0 CHECK (total >= 0),
    success     integer NOT NULL DEFAULT 0 CHECK (success >= 0),
    errors      integer NOT NULL DEFAULT 0 CHECK (errors >= 0),
    skipped     integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    p50_ms      double precision,
    p95_ms      double precision,
    p99_ms      double precision,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, stage)
);
CREATE INDEX run_stage_stats_tenant ON run_stage_stats (tenant_id);

CREATE TABLE run_vendor_usage (
    run_id           uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    vendor           text NOT NULL,
    calls            integer NOT NULL DEFAULT 0 CHECK (calls >= 0),
    errors           integer NOT NULL DEFAULT 0 CHECK (errors >= 0),
    tokens_in        bigint NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out       bigint NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    cost_micros      bigint NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
    rate_limit_hits  integer NOT NULL DEFAULT 0 CHECK (rate_limit_hits >= 0),
    quota_exhausted  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, vendor)
);
CREATE INDEX run_vendor_usage_tenant ON run_vendor_usage (tenant_id);

CREATE TABLE run_event_logs (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    run_id       uuid REFERENCES runs(id) ON DELETE CASCADE,
    stage        text NOT NULL,
    entity_id    text,
    event        text NOT NULL,
    status       text NOT NULL CHECK (status IN ('ok', 'error', 'skipped')),
    error_code   text,
    duration_ms  integer CHECK (duration_ms >= 0),
    trace_id     text,
    extra        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_event_logs_run_stage ON run_event_logs (run_id, stage);
CREATE INDEX run_event_logs_created ON run_event_logs (created_at);
CREATE INDEX run_event_logs_tenant ON run_event_logs (tenant_id, created_at);

-- ---------------------------------------------------------------- sourcing and enrichment
CREATE TABLE businesses (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    campaign_id     uuid REFERENCES campaigns(id) ON DELETE SET NULL,
    yelp_id         text,
    name            text NOT NULL,
    -- De-duplication keys (see shared::domain): normalised name + address, E.164 phone, registrable domain.
    name_norm       text NOT NULL,
    address_norm    text NOT NULL DEFAULT '',
    address1        text,
    city            text,
    state           text,
    zip             text,
    phone_e164      text CHECK (phone_e164 ~ '^\+[1-9][0-9]{7,14}$'),
    website_url     text,
    website_domain  text,
    email           text,
    latitude        double precision,
    longitude       double precision,
    categories      text[] NOT NULL DEFAULT '{}',
    rating          numeric(2, 1) CHECK (rating BETWEEN 0 AND 5),
    review_count    integer CHECK (review_count >= 0),
    is_closed       boolean NOT NULL DEFAULT false,
    first_run_id    uuid REFERENCES runs(id) ON DELETE SET NULL,
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    erased_at       timestamptz
);
CREATE UNIQUE INDEX businesses_yelp ON businesses (tenant_id, yelp_id) WHERE yelp_id IS NOT NULL;
CREATE INDEX businesses_phone ON businesses (tenant_id, phone_e164) WHERE phone_e164 IS NOT NULL;
CREATE INDEX businesses_domain ON businesses (tenant_id, website_domain) WHERE website_domain IS NOT NULL;
CREATE INDEX businesses_name_address ON businesses (tenant_id, name_norm, address_norm);
CREATE INDEX businesses_email ON businesses (tenant_id, email) WHERE email IS NOT NULL;

CREATE TABLE enrichments (
    business_id        uuid PRIMARY KEY REFERENCES businesses(id) ON DELETE CASCADE,
    tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    place_id           text,
    website_url        text,
    phone_e164         text,
    hours              jsonb,
    rating             numeric(2, 1) CHECK (rating BETWEEN 0 AND 5),
    user_rating_count  integer CHECK (user_rating_count >= 0),
    business_status    text,
    match_confidence   real NOT NULL CHECK (match_confidence BETWEEN 0 AND 1),
    matched            boolean NOT NULL,
    raw                jsonb NOT NULL DEFAULT '{}'::jsonb,
    enriched_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX enrichments_tenant ON enrichments (tenant_id);

-- ---------------------------------------------------------------- assessment
CREATE TABLE assessments (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    business_id         uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    run_id              uuid REFERENCES runs(id) ON DELETE SET NULL,
    url                 text NOT NULL,
    final_url           text,
    http_status         smallint,
    fetch_error         text,
    https               boolean,
    has_viewport        boolean,
    title               text,
    meta_description    text,
    h1                  text,
    canonical           text,
    has_open_graph      boolean,
    analytics           text[] NOT NULL DEFAULT '{}',
    cms                 text,
    copyright_year      smallint,
    contact_emails      text[] NOT NULL DEFAULT '{}',
    contact_phones      text[] NOT NULL DEFAULT '{}',
    checks              jsonb NOT NULL DEFAULT '{}'::jsonb,
    raw_html_key        text,
    html_bytes          integer CHECK (html_bytes >= 0),
    psi_performance     smallint CHECK (psi_performance BETWEEN 0 AND 100),
    psi_seo             smallint CHECK (psi_seo BETWEEN 0 AND 100),
    psi_accessibility   smallint CHECK (psi_accessibility BETWEEN 0 AND 100),
    psi_best_practices  smallint CHECK (psi_best_practices BETWEEN 0 AND 100),
    lcp_ms              double precision CHECK (lcp_ms >= 0),
    fcp_ms              double precision CHECK (fcp_ms >= 0),
    cls                 double precision CHECK (cls >= 0),
    tbt_ms              double precision CHECK (tbt_ms >= 0),
    speed_index_ms      double precision CHECK (speed_index_ms >= 0),
    insights            jsonb,
    skipped_paid        text[] NOT NULL DEFAULT '{}',
    assessed_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, business_id, run_id)
);
CREATE INDEX assessments_business ON assessments (business_id, assessed_at DESC);
CREATE INDEX assessments_assessed ON assessments (assessed_at);

CREATE TABLE llm_logs (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    business_id        uuid REFERENCES businesses(id) ON DELETE CASCADE,
    run_id             uuid REFERENCES runs(id) ON DELETE SET NULL,
    purpose            text NOT NULL CHECK (purpose IN ('insights', 'email')),
    model              text NOT NULL,
    prompt             text NOT NULL,
    completion         text,
    prompt_tokens      integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens  integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost_micros        bigint NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL
);
CREATE INDEX llm_logs_expires ON llm_logs (expires_at);
CREATE INDEX llm_logs_business ON llm_logs (tenant_id, business_id);

-- ---------------------------------------------------------------- scoring
CREATE TABLE scores (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    business_id        uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    run_id             uuid REFERENCES runs(id) ON DELETE SET NULL,
    assessment_id      uuid REFERENCES assessments(id) ON DELETE SET NULL,
    score              smallint NOT NULL CHECK (score BETWEEN 0 AND 100),
    tier               char(1) NOT NULL CHECK (tier IN ('A', 'B', 'C', 'D')),
    rules_version      text NOT NULL,
    breakdown          jsonb NOT NULL,
    qualified          boolean NOT NULL,
    disqualify_reason  text,
    scored_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, business_id, run_id)
);
CREATE INDEX scores_run_tier ON scores (run_id, tier);

-- ---------------------------------------------------------------- reports
CREATE TABLE reports (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    business_id  uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    run_id       uuid REFERENCES runs(id) ON DELETE SET NULL,
    score_id     uuid REFERENCES scores(id) ON DELETE SET NULL,
    -- Unguessable token used in preview/buy links.
    token        text NOT NULL UNIQUE CHECK (length(token) >= 32),
    preview_key  text NOT NULL,
    full_key     text NOT NULL,
    pages        smallint NOT NULL CHECK (pages > 0),
    bytes        integer NOT NULL CHECK (bytes > 0),
    price_cents  bigint NOT NULL CHECK (price_cents >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, business_id, run_id)
);

-- The storefront resolves a report token before it knows the tenant: a narrow definer door.
CREATE FUNCTION report_tenant_by_token(p_token text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT tenant_id FROM reports WHERE token = p_token $$;

-- ---------------------------------------------------------------- experiments
CREATE TABLE experiments (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key         text NOT NULL,
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('draft', 'running', 'stopped')),
    min_sample  integer NOT NULL DEFAULT 100 CHECK (min_sample > 0),
    confidence  double precision NOT NULL DEFAULT 0.95 CHECK (confidence > 0 AND confidence < 1),
    holdout_bp  integer NOT NULL DEFAULT 0 CHECK (holdout_bp BETWEEN 0 AND 10000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, key)
);
ALTER TABLE campaigns ADD FOREIGN KEY (experiment_id) REFERENCES experiments(id) ON DELETE SET NULL;

CREATE TABLE experiment_variants (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    experiment_id     uuid NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    key               text NOT NULL,
    weight            double precision NOT NULL CHECK (weight > 0),
    subject_template  text,
    body_template     text,
    UNIQUE (experiment_id, key)
);
CREATE INDEX experiment_variants_tenant ON experiment_variants (tenant_id);

CREATE TABLE experiment_assignments (
    experiment_id  uuid NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    business_id    uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    variant_id     uuid REFERENCES experiment_variants(id) ON DELETE CASCADE,
    holdout        boolean NOT NULL DEFAULT false,
    bucket_bp      integer NOT NULL CHECK (bucket_bp BETWEEN 0 AND 9999),
    assigned_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, business_id),
    CHECK (holdout OR variant_id IS NOT NULL)
);
CREATE INDEX experiment_assignments_variant ON experiment_assignments (variant_id);

-- ---------------------------------------------------------------- email and compliance
CREATE TABLE emails (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    campaign_id      uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    business_id      uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    run_id           uuid REFERENCES runs(id) ON DELETE SET NULL,
    report_id        uuid REFERENCES reports(id) ON DELETE SET NULL,
    variant_id       uuid REFERENCES experiment_variants(id) ON DELETE SET NULL,
    kind             text NOT NULL DEFAULT 'outreach' CHECK (kind IN ('outreach', 'fulfilment')),
    to_email         text NOT NULL,
    subject          text NOT NULL,
    body_text        text,
    body_html        text,
    -- Send state machine: queued → sending → sent | failed | unknown (ambiguous: parked for an operator).
    send_state       text NOT NULL DEFAULT 'queued'
                     CHECK (send_state IN ('queued', 'sending', 'sent', 'failed', 'unknown')),
    -- What SendGrid later reported; the furthest event wins (see the sendgrid-webhook function).
    delivery_status  text CHECK (delivery_status IN ('processed', 'deferred', 'delivered', 'bounced', 'dropped', 'spamreport')),
    sg_message_id    text,
    attempts         smallint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text,
    generated_by     text NOT NULL DEFAULT 'template' CHECK (generated_by IN ('llm', 'template')),
    spam_score       smallint CHECK (spam_score BETWEEN 0 AND 100),
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    delivered_at     timestamptz,
    opened_at        timestamptz,
    clicked_at       timestamptz,
    unsubscribed_at  timestamptz,
    body_purged_at   timestamptz
);
-- Never two outreach emails to one business in one campaign.
CREATE UNIQUE INDEX emails_one_outreach_per_business ON emails (tenant_id, campaign_id, business_id) WHERE kind = 'outreach';
CREATE UNIQUE INDEX emails_sg_message ON emails (sg_message_id) WHERE sg_message_id IS NOT NULL;
CREATE INDEX emails_campaign_sent ON emails (tenant_id, campaign_id, sent_at);
CREATE INDEX emails_to ON emails (tenant_id, to_email);
CREATE INDEX emails_state ON emails (send_state) WHERE send_state IN ('sending', 'unknown');

CREATE TABLE email_events (
    id             bigserial PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email_id       uuid REFERENCES emails(id) ON DELETE CASCADE,
    -- SendGrid's event id, or a hash of (message id, event, timestamp) when absent.
    sg_event_id    text NOT NULL,
    event          text NOT NULL,
    sg_message_id  text,
    occurred_at    timestamptz NOT NULL,
    reason         text,
    bounce_type    text,
    url            text,
    raw            jsonb NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, sg_event_id)
);
CREATE INDEX email_events_email ON email_events (email_id, occurred_at);
CREATE INDEX email_events_tenant_time ON email_events (tenant_id, occurred_at);

CREATE TABLE suppressions (
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('email', 'domain')),
    -- Normalised address (Email::parse) or registrable domain; the one suppression store.
    value       text NOT NULL CHECK (value = lower(value) AND length(value) > 0),
    reason      text NOT NULL CHECK (reason IN ('unsubscribe', 'hard_bounce', 'soft_bounce', 'spamreport', 'dropped', 'manual', 'erasure', 'group_unsubscribe')),
    source      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, value)
);

CREATE TABLE send_counters (
    tenant_id  uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- e.g. 'campaign:<uuid>' or 'domain:example.com'
    scope      text NOT NULL,
    day        date NOT NULL,
    sent       integer NOT NULL DEFAULT 0 CHECK (sent >= 0),
    PRIMARY KEY (tenant_id, scope, day)
);

CREATE TABLE send_pauses (
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope        text NOT NULL DEFAULT 'all',
    reason       text NOT NULL,
    paused_at    timestamptz NOT NULL DEFAULT now(),
    resumed_at   timestamptz,
    PRIMARY KEY (tenant_id, scope, paused_at)
);

-- ---------------------------------------------------------------- storefront
CREATE TABLE purchases (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    report_id              uuid NOT NULL REFERENCES reports(id) ON DELETE RESTRICT,
    business_id            uuid NOT NULL REFERENCES businesses(id) ON DELETE RESTRICT,
    campaign_id            uuid REFERENCES campaigns(id) ON DELETE SET NULL,
    email_id               uuid REFERENCES emails(id) ON DELETE SET NULL,
    stripe_session_id      text NOT NULL UNIQUE,
    stripe_payment_intent  text,
    status                 text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'paid', 'failed', 'refunded', 'partially_refunded', 'expired')),
    amount_cents           bigint NOT NULL CHECK (amount_cents >= 0),
    refunded_cents         bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    currency               char(3) NOT NULL DEFAULT 'usd',
    customer_email         text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    paid_at                timestamptz,
    fulfilled_at           timestamptz,
    fulfilment_email_id    uuid REFERENCES emails(id) ON DELETE SET NULL,
    CHECK (refunded_cents <= amount_cents)
);
CREATE INDEX purchases_tenant_paid ON purchases (tenant_id, paid_at);
CREATE INDEX purchases_report ON purchases (report_id);

CREATE TABLE stripe_events (
    event_id     text PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    type         text NOT NULL,
    created      timestamptz NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE INDEX stripe_events_tenant ON stripe_events (tenant_id, received_at);

-- ---------------------------------------------------------------- idempotency, cost, budget
CREATE TABLE processed_messages (
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    stage       text NOT NULL,
    key         text NOT NULL,
    status      text NOT NULL DEFAULT 'in_progress' CHECK (status IN ('in_progress', 'done')),
    outcome     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stage, key)
);
CREATE INDEX processed_messages_created ON processed_messages (created_at);

CREATE TABLE cost_ledger (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    run_id       uuid REFERENCES runs(id) ON DELETE SET NULL,
    business_id  uuid REFERENCES businesses(id) ON DELETE SET NULL,
    vendor       text NOT NULL,
    endpoint     text NOT NULL,
    status       smallint,
    latency_ms   integer CHECK (latency_ms >= 0),
    units        integer NOT NULL DEFAULT 1 CHECK (units >= 0),
    tokens_in    integer NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out   integer NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    cost_micros  bigint NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cost_ledger_tenant_time ON cost_ledger (tenant_id, occurred_at);
CREATE INDEX cost_ledger_run ON cost_ledger (run_id, vendor);

CREATE TABLE budgets (
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- 'llm', 'pagespeed', 'places', 'yelp', 'email', or 'all'
    vendor_class    text NOT NULL,
    day             date NOT NULL,
    limit_micros    bigint NOT NULL CHECK (limit_micros >= 0),
    reserved_micros bigint NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    spent_micros    bigint NOT NULL DEFAULT 0 CHECK (spent_micros >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, vendor_class, day),
    -- The gate's invariant, enforced by the database itself: never reserve past the limit.
    CHECK (reserved_micros <= limit_micros)
);

-- ---------------------------------------------------------------- operations
CREATE TABLE qa_samples (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    run_id         uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    business_id    uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    score_id       uuid REFERENCES scores(id) ON DELETE SET NULL,
    assessment_id  uuid REFERENCES assessments(id) ON DELETE SET NULL,
    report_id      uuid REFERENCES reports(id) ON DELETE SET NULL,
    email_id       uuid REFERENCES emails(id) ON DELETE SET NULL,
    result         text NOT NULL DEFAULT 'needs_review' CHECK (result IN ('needs_review', 'pass', 'fail')),
    reviewer       text,
    notes          text,
    reviewed_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, business_id)
);
CREATE INDEX qa_samples_tenant_created ON qa_samples (tenant_id, created_at);

CREATE TABLE sent_alerts (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    rule        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical', 'recovered')),
    -- Rule + subject + window: two overlapping alert runs insert the same key, so one wins.
    dedupe_key  text NOT NULL,
    message     text NOT NULL,
    value       double precision,
    threshold   double precision,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    delivered   boolean NOT NULL DEFAULT false,
    UNIQUE (tenant_id, dedupe_key)
);
CREATE INDEX sent_alerts_rule_time ON sent_alerts (tenant_id, rule, sent_at DESC);
CREATE INDEX sent_alerts_time ON sent_alerts (sent_at);

CREATE TABLE funnel_daily (
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    campaign_id     uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    day             date NOT NULL,
    sourced         integer NOT NULL DEFAULT 0,
    assessed        integer NOT NULL DEFAULT 0,
    scored          integer NOT NULL DEFAULT 0,
    emailed         integer NOT NULL DEFAULT 0,
    delivered       integer NOT NULL DEFAULT 0,
    opened          integer NOT NULL DEFAULT 0,
    clicked         integer NOT NULL DEFAULT 0,
    bounced         integer NOT NULL DEFAULT 0,
    spam_reports    integer NOT NULL DEFAULT 0,
    purchased       integer NOT NULL DEFAULT 0,
    revenue_cents   bigint NOT NULL DEFAULT 0,
    cost_micros     bigint NOT NULL DEFAULT 0,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id, day)
);

-- Purge records are operational, not tenant data: written by the retention function (owner role).
CREATE TABLE retention_runs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    rows        bigint NOT NULL DEFAULT 0 CHECK (rows >= 0),
    objects     bigint NOT NULL DEFAULT 0 CHECK (objects >= 0),
    cutoff      timestamptz,
    ran_at      timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- row-level security
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'api_keys', 'campaigns', 'runs', 'run_stage_stats', 'run_vendor_usage', 'run_event_logs',
        'businesses', 'enrichments', 'assessments', 'llm_logs', 'scores', 'reports', 'experiments',
        'experiment_variants', 'experiment_assignments', 'emails', 'email_events', 'suppressions',
        'send_counters', 'send_pauses', 'purchases', 'stripe_events', 'processed_messages',
        'cost_ledger', 'budgets', 'qa_samples', 'sent_alerts', 'funnel_daily'
    ]
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant()) '
            'WITH CHECK (tenant_id = app_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO leadfactory_app', t);
    END LOOP;
END
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants USING (id = app_current_tenant()) WITH CHECK (id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE ON tenants TO leadfactory_app;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO leadfactory_app;
GRANT EXECUTE ON FUNCTION app_current_tenant() TO leadfactory_app;
GRANT EXECUTE ON FUNCTION api_key_lookup(text) TO leadfactory_app;
GRANT EXECUTE ON FUNCTION report_tenant_by_token(text) TO leadfactory_app;

-- The definer functions above run as the schema owner, which FORCE ROW LEVEL SECURITY also binds
-- when it is not a superuser (RDS). Roles outside leadfactory_app (the owner, operators) may read
-- these three tables; application roles never can without a tenant.
CREATE POLICY owner_read ON api_keys FOR SELECT USING (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'));
CREATE POLICY owner_read ON reports FOR SELECT USING (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'));
CREATE POLICY owner_read ON tenants FOR SELECT USING (NOT pg_has_role(current_user, 'leadfactory_app', 'MEMBER'));

-- Scheduled jobs (analytics, alerts, retention) work tenant by tenant: this lists the tenants.
CREATE FUNCTION list_tenant_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT id FROM tenants ORDER BY id $$;
GRANT EXECUTE ON FUNCTION list_tenant_ids() TO leadfactory_app;
