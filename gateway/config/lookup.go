package config

// Service returns the service of that name, or nil.
func (c *Config) Service(name string) *Service {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i]
		}
	}
	return nil
}

// Route returns the route of that name, or nil.
func (c *Config) Route(name string) *Route {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// JWTProvider returns the jwt provider of that name, or nil.
func (c *Config) JWTProvider(name string) *JWT {
	for i := range c.JWT {
		if c.JWT[i].Name == name {
			return &c.JWT[i]
		}
	}
	return nil
}

// RateLimit returns the rate_limit policy of that name, or nil.
func (c *Config) RateLimit(name string) *RateLimit {
	for i := range c.RateLimits {
		if c.RateLimits[i].Name == name {
			return &c.RateLimits[i]
		}
	}
	return nil
}
