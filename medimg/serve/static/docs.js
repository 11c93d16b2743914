// The OpenAPI page, from the locally installed Swagger UI (no CDN).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
