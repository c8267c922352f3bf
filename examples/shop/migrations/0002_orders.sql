-- Orders: placed once per Idempotency-Key, read by their subject only.
CREATE TABLE orders (
    -- The primary key's index serves GET /orders/{id}
    -- (WHERE id = $1 AND subject = $2: one row found by id, then checked).
    id          bigserial PRIMARY KEY,
    subject     text        NOT NULL,
    product_id  bigint      NOT NULL REFERENCES products (id),
    quantity    integer     NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    -- Not unique on purpose: the load test counts duplicates with it.
    client_ref  text        NULL CHECK (char_length(client_ref) <= 64),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Serves the foreign key: without it, deleting a product (or changing its
-- id) scans every order to check none refers to it.
CREATE INDEX orders_product_id_idx ON orders (product_id);

-- Serves the duplicate check of the deployment's load test
-- (SELECT client_ref FROM orders GROUP BY client_ref HAVING count(*) > 1)
-- and a support lookup by the client's own reference
-- (WHERE client_ref = $1).
CREATE INDEX orders_client_ref_idx ON orders (client_ref);
