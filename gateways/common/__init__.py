"""Code every gateway shares and no gateway owns: the context the service hands a gateway
(:mod:`.context`), typed config reads (:mod:`.settings`), the start-up error (:mod:`.errors`),
the line-protocol lifecycle (:mod:`.lineproto`), the ``{n}``/``{n+}`` literal framer
(:mod:`.literals`), the plaintext-login rule (:mod:`.plaintext`), the relay's config keys
(:mod:`.relayconf`) and the SMTP/LMTP wire pieces (:mod:`.smtpwire`, :mod:`.smtpserver`).  It imports the store contract and nothing of any gateway or the process."""
