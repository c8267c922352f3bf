-- Products: read by everyone, updated with If-Match (`version` is the ETag).
CREATE TABLE products (
    -- The primary key's index serves GET /products/{id}
    -- (WHERE id = $1), PUT /products/{id} (SELECT ... FOR UPDATE) and the
    -- keyset pagination of GET /products (WHERE id > $after ORDER BY id
    -- LIMIT $n: one range scan, however deep the page).
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    price_cents bigint      NOT NULL CHECK (price_cents >= 0),
    stock       integer     NOT NULL CHECK (stock >= 0),
    version     bigint      NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Serves `shop seed` (INSERT ... ON CONFLICT (name) DO NOTHING, so seeding
-- twice adds nothing) and keeps names unique (a PUT to a taken name: 409).
CREATE UNIQUE INDEX products_name_key ON products (name);
