"""What the web adapters (api, widgets, console) share about HTTP requests.

- `app`: the Flask class of the service.
- `urls`: the public base URL and the service's own origin.
- `voter`: the signed voter cookie and the client address a request offers.
- `owner`: the owner named by a request's API key.
- `cors`: CORS and origin rules of the public poll endpoints.
- `limiter`: Flask-Limiter, for limits on views (the console's sign-in).
"""
