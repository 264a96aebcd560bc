-- Users of every region: accounts is global, not sharded.
create table users (
    id uuid primary key,
    -- as the user typed it, for display
    email text not null,
    -- trimmed and lower-cased: what uniqueness and login compare, so Ann@X.org and ann@x.org are
    -- one account
    email_normalized text not null,
    name text not null,
    -- argon2id PHC string (algorithm, parameters and salt travel with the hash)
    password_hash text not null,
    role text not null check (role in ('CUSTOMER', 'ORGANIZER', 'ADMIN')),
    created_at timestamptz not null default now()
);

create unique index users_email_normalized on users (email_normalized);
