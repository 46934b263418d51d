"""An example Scrapy project whose spider crawls through proxypool, by geography."""
