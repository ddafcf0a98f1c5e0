-- ListUsers' public_email_domain filter: the email's domain, lowercased and
-- reversed, byte-ordered, so that a domain and all its subdomains are one
-- value and one range of this index ('moc.liamg', 'moc.liamg.' to
-- 'moc.liamg/'). The expression is the store's REVERSED_EMAIL_DOMAIN.
create index users_org_email_domain_idx
    on users (organization_id, (reverse(lower(split_part(email, '@', -1)))) collate "C");
