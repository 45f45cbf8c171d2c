"""The ceiling: a hello-world Flask app under the same gunicorn config as Pollbox."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/hello")
def hello():
    return jsonify(hello="world")
