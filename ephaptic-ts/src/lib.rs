//! TypeScript export for ephaptic. Placeholder until the export issue lands.
