-- GET with If-None-Match: the answer a polling widget gets while nothing changed (304).
-- Env: ETAG.
wrk.headers["If-None-Match"] = os.getenv("ETAG")
